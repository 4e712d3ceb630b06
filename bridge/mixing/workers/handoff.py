"""Moving a participant's media state between processes.

A participant joins a room in the main process (after the IVR, if any) and is then handed to
the room's worker: everything that makes its stream continuous travels (jitter buffer, RTP
sender with its SSRC and sequence numbers, RFC 4733 decoder, queued prompts, flags, counters),
while what is tied to a process stays behind (the send function, the room's DTMF detector
state, a wideband stream's PyAV and libopus codec state, rebuilt on the worker's first tick)
and a G.711 codec goes by name, not as its 128 KiB of tables.
"""

from __future__ import annotations

import dataclasses
import pickle

from bridge.media.g711 import CODECS, PCMU, Codec
from bridge.mixing.participant import Address, Participant


def _not_connected(data: bytes, address: Address) -> None:
    """The send function of a participant in transit (a module function pickles by name)."""


def pack(participant: Participant) -> bytes:
    codec = participant.codec
    travelling = dataclasses.replace(
        participant, send=_not_connected, codec=PCMU, inband=None, stream=None
    )
    named = codec.name if isinstance(codec, Codec) else codec  # a WidebandCodec pickles
    return pickle.dumps((named, travelling), protocol=pickle.HIGHEST_PROTOCOL)


def unpack(state: bytes) -> Participant:
    codec, participant = pickle.loads(state)  # from our own main process only
    participant.codec = CODECS[codec] if isinstance(codec, str) else codec
    return participant
