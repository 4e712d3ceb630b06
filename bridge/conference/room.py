"""A room: its participants and its 20 ms mix-minus tick.

The tick is a pure step over arrays (decode each participant's frame into one preallocated
matrix, one vectorised in-band DTMF step, one vectorised mix, one table lookup per codec to
encode), so a test can drive it without a clock. Only participants hearing a prompt or with a
listening volume of their own get a frame encoded on its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from bridge.conference.participant import Participant
from bridge.media.dtmf import DtmfDetector
from bridge.media.g711 import Codec
from bridge.media.mixer import RoomMix
from bridge.media.prompt import overlay
from bridge.media.tones import DBM0_PEAK, hold_music

ROOM_NAME = re.compile(r"[A-Za-z0-9._-]{1,32}")
FRAME_SAMPLES = 160

Digit = tuple[Participant, str, str]  # who, which key, how it was sent
VOICE_POWER = (DBM0_PEAK**2 / 2) * 10 ** (-40 / 10)
"""Mean power over which a frame counts as voice: -40 dBm0, well over G.711 idle noise."""
HOLD_MUSIC = hold_music()


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
    """`mixing=False` makes a lobby: each member hears only its own prompts (the code IVR)."""

    name: str
    max_participants: int
    mixing: bool = True
    participants: list[Participant] = field(default_factory=list)
    stats: TickStats = field(default_factory=TickStats)
    mixer: RoomMix = field(default_factory=RoomMix)
    detector: DtmfDetector = field(default_factory=DtmfDetector)
    talk_changes: list[Participant] = field(default_factory=list)  # since the service looked
    hold_position: int = 0

    @property
    def full(self) -> bool:
        return len(self.participants) >= self.max_participants

    def add(self, participant: Participant) -> None:
        participant.inband = self.detector.new_state()
        participant.room = self.name
        self.participants.append(participant)

    def remove(self, participant: Participant) -> None:
        if participant in self.participants:
            self.participants.remove(participant)

    def find(self, participant_id: str) -> Participant | None:
        return next((p for p in self.participants if p.id == participant_id), None)

    def tick(self) -> list[Digit]:
        """Mix one 20 ms frame: everyone hears the sum of the others who are not muted or held.

        Returns the digits pressed since the last tick, in-band ones detected here."""
        members = self.participants
        n = len(members)
        if n == 0:
            return []
        frames = self.mixer.slots(n)
        digits: list[Digit] = []
        for i, participant in enumerate(members):
            participant.next_frame(frames[i])
            if participant.digits:
                digits.extend((participant, d, m) for d, m in participant.digits)
                participant.digits.clear()
        states = [p.inband for p in members]
        for participant, digit in zip(members, self.detector.process(frames, states), strict=True):
            if digit is not None and participant.inband_dtmf:
                digits.append((participant, digit, "inband"))
        loud = (self.detector.energies > VOICE_POWER * FRAME_SAMPLES).tolist()
        for participant, is_loud in zip(members, loud, strict=True):
            if participant.voice.update(is_loud and not participant.held):
                self.talk_changes.append(participant)
        if self.mixing:
            contributes = np.fromiter(
                (
                    not (
                        p.muted
                        or p.on_hold
                        or p.held
                        or (p.inband is not None and p.inband.tone_present)
                    )
                    for p in members
                ),
                bool,
                n,
            )
            mixed = self.mixer.mix(frames, contributes)
        else:
            mixed = np.zeros((n, FRAME_SAMPLES), np.int16)
        as_index = mixed.view(np.uint16)
        codecs = {p.codec.name: p.codec for p in members}
        encoded = {name: codec.encode_table.take(as_index) for name, codec in codecs.items()}
        music: dict[str, bytes] = {}
        for i, participant in enumerate(members):
            if participant.on_hold:
                continue
            if participant.held:
                if not music:
                    music = self._hold_music_frames(codecs)
                participant.send_payload(music[participant.codec.name])
                continue
            prompt = participant.prompts.next_frame() if participant.prompts.busy else None
            if prompt is None and participant.volume_db == 0:
                if participant.deaf:
                    participant.send_payload(participant.codec.silence)
                else:
                    participant.send_payload(encoded[participant.codec.name][i].tobytes())
                continue
            heard = np.zeros(FRAME_SAMPLES, np.int16) if participant.deaf else mixed[i]
            if participant.volume_db:
                heard = _scaled(heard, participant.volume_db)
            if prompt is not None:
                frame, replace = prompt
                heard = overlay(heard, frame, replace=replace)
            participant.send_payload(participant.codec.encode(heard))
        return digits


    def _hold_music_frames(self, codecs: dict[str, Codec]) -> dict[str, bytes]:
        """This tick's frame of the hold music, encoded once per codec for every held caller."""
        start = self.hold_position
        self.hold_position = (start + FRAME_SAMPLES) % HOLD_MUSIC.size
        frame = HOLD_MUSIC[start : start + FRAME_SAMPLES]
        return {name: codec.encode(frame) for name, codec in codecs.items()}


def _scaled(frame: np.ndarray, volume_db: int) -> np.ndarray:
    gain = 10.0 ** (volume_db / 20.0)
    return np.clip(np.rint(frame * gain), -32768, 32767).astype(np.int16)
