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

from bridge.conference.participant import Address, Participant
from bridge.media.g711 import CODECS, PCMU
from bridge.workers.protocol import UpdateParticipant


def _not_connected(data: bytes, address: Address) -> None:
    """The send function of a participant in transit (a module function pickles by name)."""


def pack(participant: Participant) -> bytes:
    travelling = dataclasses.replace(participant, send=_not_connected, codec=PCMU, inband=None)
    return pickle.dumps((participant.codec.name, travelling), protocol=pickle.HIGHEST_PROTOCOL)


def unpack(state: bytes) -> Participant:
    codec_name, participant = pickle.loads(state)  # from our own main process only
    participant.codec = CODECS[codec_name]
    return participant


def flags_of(participant: Participant) -> UpdateParticipant:
    return UpdateParticipant(
        participant.call_key,
        participant.muted,
        participant.deaf,
        participant.on_hold,
        participant.held,
        participant.dtmf_enabled,
        participant.volume_db,
        participant.remote,
        participant.codec.name,
        participant.telephone_event_pt,
    )


def apply_flags(participant: Participant, flags: UpdateParticipant) -> None:
    participant.muted = flags.muted
    participant.deaf = flags.deaf
    participant.on_hold = flags.on_hold
    participant.held = flags.held
    participant.dtmf_enabled = flags.dtmf_enabled
    participant.volume_db = flags.volume_db
    participant.remote = flags.remote
    participant.codec = CODECS[flags.codec]
    participant.telephone_event_pt = flags.telephone_event_pt
