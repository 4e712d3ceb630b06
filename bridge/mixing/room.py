"""A room: its participants and its 20 ms mix-minus tick.

The tick is a pure step over arrays (decode every participant's frame into one preallocated
matrix, one table lookup per codec; one vectorised in-band DTMF step, when a member keys
in-band (no telephone-event negotiated); one vectorised mix; one table lookup per codec to
encode), so a test can drive it without a clock. The mix has a row of its own only for each
member who contributes (a frame that is not all zeros, not muted, held or an in-band key tone);
everyone else hears the total, encoded once per codec and sent as the same bytes. Only
participants hearing a prompt or with a listening volume of their own get a frame encoded on
its own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from bridge.media.dtmf import DtmfDetector
from bridge.media.g711 import Codec
from bridge.media.mixer import RoomMix
from bridge.media.prompt import overlay
from bridge.mixing.multirate import HOLD_MUSIC, MultiRateMix, is_wideband_room
from bridge.mixing.participant import VOICE_POWER, Participant, select_contributors
from bridge.mixing.recording import RoomRecording

ROOM_NAME = re.compile(r"[A-Za-z0-9._-]{1,32}")
FRAME_SAMPLES = 160

Digit = tuple[Participant, str, str]  # who, which key, how it was sent


def gather_frames(
    members: Sequence[Participant],
    frames: np.ndarray,
    first: int,
    samples: int,
    batches: dict[str, tuple[list[int], list[bytes]]],
    silent: list[int],
    codecs: dict[str, Codec],
) -> list[Digit]:
    """Each member's payload for this tick, into rows `first`.. of `frames`: full frames are
    queued in `batches` per codec for the caller to decode together (one numpy call per
    codec), a loss being faded or an odd-sized payload is written at once, rows with nothing
    are listed in `silent`. Shared by the reference and the vectorised tick; returns the keys
    received (RFC 4733) since the last tick."""
    digits: list[Digit] = []
    for i, participant in enumerate(members, first):
        codec = participant.codec
        payload = participant.next_payload()
        if payload is None:
            faded = participant.concealer.fade()
            if faded is None:
                silent.append(i)
            else:
                frames[i] = faded
        elif len(payload) == samples:
            batch = batches.get(codec.name)
            if batch is None:
                batch = batches[codec.name] = ([], [])
            batch[0].append(i)
            batch[1].append(payload)
        else:
            codec.decode_into(payload, frames[i])
        if codec.name not in codecs:
            codecs[codec.name] = codec
        if participant.digits:
            digits.extend((participant, d, m) for d, m in participant.digits)
            participant.digits.clear()
    return digits


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
    wideband: MultiRateMix | None = None  # made when a G.722 or Opus member first joins
    recording: RoomRecording | None = None

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
        if is_wideband_room(members):
            if self.wideband is None:
                self.wideband = MultiRateMix()
            return self.wideband.tick(
                members, self.mixing, self.detector, self.talk_changes, self.recording
            )
        frames = self.mixer.slots(n)
        digits, codecs = self._decode(members, frames)
        if any(p.inband_dtmf for p in members):  # someone keys in-band
            states = [p.inband for p in members]
            found = self.detector.process(frames, states)
            for participant, digit in zip(members, found, strict=True):
                if digit is not None and participant.inband_dtmf:
                    digits.append((participant, digit, "inband"))
            energies = self.detector.energies
        else:  # the usual softphone or trunk sends RFC 4733 events: no tone detection
            energies = self.detector.frame_energies(frames)
        loud = (energies > VOICE_POWER * FRAME_SAMPLES).tolist()
        # A frame of exact zeros adds nothing to the sum, so leaving it out changes no one's
        # mix (the energy of a frame with any sample != 0 is at least 1: exact in float32).
        sounding = (energies > 0).tolist() if self.mixing else [False] * n
        contributors = select_contributors(members, loud, sounding, self.talk_changes)
        # Row j of `mixed` is what contributor j hears; its last row, the total, is what every
        # other member hears, so that row is encoded once per codec and its bytes shared.
        mixed = self.mixer.mix_contributors(frames, contributors)
        shared = len(contributors)
        if self.recording is not None:
            self.recording.push(mixed[shared], 8000)
        row_of = [shared] * n
        for row, i in enumerate(contributors):
            row_of[i] = row
        as_index = mixed.view(np.uint16)
        encoded = {
            name: codec.encode_table.take(as_index).tobytes() for name, codec in codecs.items()
        }
        start = shared * FRAME_SAMPLES  # G.711: one byte a sample
        total = {name: payloads[start:] for name, payloads in encoded.items()}
        music: dict[str, bytes] = {}
        for participant, row in zip(members, row_of, strict=True):
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
                elif row == shared:
                    participant.send_payload(total[participant.codec.name])
                else:
                    start = row * FRAME_SAMPLES
                    payloads = encoded[participant.codec.name]
                    participant.send_payload(payloads[start : start + FRAME_SAMPLES])
                continue
            heard = np.zeros(FRAME_SAMPLES, np.int16) if participant.deaf else mixed[row]
            if participant.volume_db:
                heard = _scaled(heard, participant.volume_db)
            if prompt is not None:
                frame, replace = prompt
                heard = overlay(heard, frame, replace=replace)
            participant.send_payload(participant.codec.encode(heard))
        return digits

    def _decode(
        self, members: list[Participant], frames: np.ndarray
    ) -> tuple[list[Digit], dict[str, Codec]]:
        """Fill `frames` with each member's frame for this tick, decoding the usual full
        frames in one numpy call per codec; returns the digits received and the codecs in use.

        Only a loss being faded or an odd-sized payload costs a numpy call of its own."""
        codecs: dict[str, Codec] = {}
        batches: dict[str, tuple[list[int], list[bytes]]] = {}
        silent: list[int] = []
        digits = gather_frames(members, frames, 0, FRAME_SAMPLES, batches, silent, codecs)
        if silent:
            frames[silent] = 0
        for name, (rows, payloads) in batches.items():
            joined = b"".join(payloads)
            if len(rows) == len(members) and frames.flags.c_contiguous:  # all: in place
                codecs[name].decode_into(joined, frames.reshape(-1))
            else:
                frames[rows] = codecs[name].decode(joined).reshape(len(rows), FRAME_SAMPLES)
        return digits, codecs

    def _hold_music_frames(self, codecs: dict[str, Codec]) -> dict[str, bytes]:
        """This tick's frame of the hold music, encoded once per codec for every held caller."""
        start = self.hold_position
        self.hold_position = (start + FRAME_SAMPLES) % HOLD_MUSIC.size
        frame = HOLD_MUSIC[start : start + FRAME_SAMPLES]
        return {name: codec.encode(frame) for name, codec in codecs.items()}


def _scaled(frame: np.ndarray, volume_db: int) -> np.ndarray:
    gain = 10.0 ** (volume_db / 20.0)
    return np.clip(np.rint(frame * gain), -32768, 32767).astype(np.int16)
