"""A room: its participants and its 20 ms mix-minus tick.

The tick is a pure step over arrays (decode each participant's frame into one preallocated
matrix, one vectorised mix, one table lookup per codec to encode), so a test can drive it without
a clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from bridge.conference.participant import Participant
from bridge.media.mixer import RoomMix

ROOM_NAME = re.compile(r"[A-Za-z0-9._-]{1,32}")


def valid_room_name(name: str) -> bool:
    return ROOM_NAME.fullmatch(name) is not None


@dataclass
class TickStats:
    """How late this room's ticks ran against their absolute deadlines (for the benchmark)."""

    ticks: int = 0
    late_over_5ms: int = 0
    max_late_ms: float = 0.0
    total_late_ms: float = 0.0

    def record(self, late_s: float) -> None:
        late_ms = late_s * 1000.0
        self.ticks += 1
        self.total_late_ms += late_ms
        if late_ms > 5.0:
            self.late_over_5ms += 1
        if late_ms > self.max_late_ms:
            self.max_late_ms = late_ms


@dataclass(eq=False)
class Room:
    name: str
    max_participants: int
    participants: list[Participant] = field(default_factory=list)
    stats: TickStats = field(default_factory=TickStats)
    mixer: RoomMix = field(default_factory=RoomMix)

    @property
    def full(self) -> bool:
        return len(self.participants) >= self.max_participants

    def add(self, participant: Participant) -> None:
        self.participants.append(participant)

    def remove(self, participant: Participant) -> None:
        if participant in self.participants:
            self.participants.remove(participant)

    def find(self, participant_id: str) -> Participant | None:
        return next((p for p in self.participants if p.id == participant_id), None)

    def tick(self) -> None:
        """Mix one 20 ms frame: everyone hears the sum of the others who are not muted or held."""
        members = self.participants
        n = len(members)
        if n == 0:
            return
        frames = self.mixer.slots(n)
        for i, participant in enumerate(members):
            participant.next_frame(frames[i])
        contributes = np.fromiter((not (p.muted or p.on_hold) for p in members), bool, n)
        as_index = self.mixer.mix(frames, contributes).view(np.uint16)
        codecs = {p.codec.name: p.codec for p in members}
        encoded = {name: codec.encode_table.take(as_index) for name, codec in codecs.items()}
        for i, participant in enumerate(members):
            if participant.on_hold:
                continue
            if participant.deaf:
                participant.send_payload(participant.codec.silence)
            else:
                participant.send_payload(encoded[participant.codec.name][i].tobytes())
