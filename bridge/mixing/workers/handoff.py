"""Moving a participant's media state between processes.

A participant joins a room in the main process (after the IVR, if any) and is then handed to
the room's worker: everything that makes its stream continuous travels (jitter buffer, RTP
sender with its SSRC and sequence numbers, RFC 4733 decoder, queued prompts, flags, counters),
while what is tied to a process stays behind (the send function, the room's DTMF detector
state) and the codec goes by name, not as its 128 KiB of tables.
"""

from __future__ import annotations

import dataclasses
import pickle

from bridge.media.g711 import CODECS, PCMU
from bridge.mixing.participant import Address, Participant


def _not_connected(data: bytes, address: Address) -> None:
    """The send function of a participant in transit (a module function pickles by name)."""


def pack(participant: Participant) -> bytes:
    travelling = dataclasses.replace(participant, send=_not_connected, codec=PCMU, inband=None)
    return pickle.dumps((participant.codec.name, travelling), protocol=pickle.HIGHEST_PROTOCOL)


def unpack(state: bytes) -> Participant:
    codec_name, participant = pickle.loads(state)  # from our own main process only
    participant.codec = CODECS[codec_name]
    return participant
