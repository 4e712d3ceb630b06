"""The reference tick of a room with a wideband member (G.722, Opus): mixed at the highest rate
any member needs (8, 16 or 48 kHz), each member resampled in and out.

What a G.711 room does in one table lookup per codec, this does per member: decode with the
member's own stateful decoder (Opus: in-band FEC from the next packet, else the codec's
concealment), resample to the room's rate, mix-minus (`RoomMix`, as the G.711 tick), then
resample back and encode. Listeners who hear the same mix share its packets: the total is
encoded once per codec, parameters and rate (one Opus encoder for every silent listener), and
only talkers (a row of their own) and members hearing a prompt or a volume of their own use an
encoder of their own. In-band DTMF runs on an 8 kHz copy; talking detection on the room's
frames, scaled to the 8 kHz threshold; a member is mixed while talking or above a -60 dBm0
noise floor.
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np

from bridge.media.codecs import Encoder, MediaCodec, WidebandCodec, mixing_rate, native_rate
from bridge.media.dtmf import DtmfDetector
from bridge.media.g711 import Codec
from bridge.media.mixer import RoomMix
from bridge.media.opus import OpusDecoder
from bridge.media.prompt import overlay
from bridge.media.resample import Resampler
from bridge.media.tones import hold_music
from bridge.mixing.participant import VOICE_POWER, Participant, select_contributors
from bridge.mixing.recording import RoomRecording
from bridge.mixing.stream_state import StreamState

NARROW_SAMPLES = 160
NOISE_FLOOR = VOICE_POWER * 10 ** (-20 / 10)
"""-60 dBm0: quieter frames are not mixed unless the member is talking. Opus and G.722 never
decode silence to exact zeros, so without this gate every quiet listener would count as a
talker and need a mix and an encoder of its own."""
HOLD_MUSIC = hold_music()  # 8 kHz, for both ticks

Digit = tuple[Participant, str, str]


def is_wideband_room(members: list[Participant]) -> bool:
    """True when some member's codec is not G.711: the room needs this tick."""
    return not all(type(p.codec) is Codec for p in members)


def _encoder_key(codec: MediaCodec) -> Hashable:
    return codec.encoder_key if isinstance(codec, WidebandCodec) else codec.name


class _SharedOutput:
    """The room's total as one kind of listener hears it: resampled to its codec's rate and
    encoded once a tick for all of them."""

    def __init__(self, codec: MediaCodec, room_rate: int) -> None:
        self.resampler = Resampler(room_rate, native_rate(codec))
        self.encoder: Encoder = codec.new_encoder() if isinstance(codec, WidebandCodec) else codec


class MultiRateMix:
    """One room's multi-rate state: the mix buffers at the room's rate and the shared outputs."""

    def __init__(self) -> None:
        self.rate = 0
        self.mixer = RoomMix()
        self.shared: dict[Hashable, _SharedOutput] = {}
        self.hold_position = 0
        self.lone: str | None = None  # the call key of the lone talker (see _lone_talker)

    def _set_rate(self, rate: int) -> None:
        self.rate = rate
        self.mixer = RoomMix(frame_samples=rate // 50)
        self.shared.clear()

    def tick(
        self,
        members: list[Participant],
        mixing: bool,
        detector: DtmfDetector,
        talk_changes: list[Participant],
        recording: RoomRecording | None = None,
    ) -> list[Digit]:
        rate = max(mixing_rate(p.codec) for p in members)
        if rate != self.rate:
            self._set_rate(rate)
        n = len(members)
        frames = self.mixer.slots(n)
        digits: list[Digit] = []
        for i, participant in enumerate(members):
            state = participant.stream
            if state is None or state.codec != participant.codec:
                state = participant.stream = StreamState(participant.codec, rate)
            elif state.room_rate != rate:
                state.at_rate(rate)
            frames[i] = state.to_room.process(_decode(participant, state))
            if participant.digits:
                digits.extend((participant, d, m) for d, m in participant.digits)
                participant.digits.clear()
        states = [p.stream for p in members]
        if any(p.inband_dtmf for p in members):
            narrow = np.stack([s.to_8k.process(frames[i]) for i, s in enumerate(states)])  # type: ignore[union-attr]
            found = detector.process(narrow, [p.inband for p in members])  # type: ignore[misc]
            for participant, digit in zip(members, found, strict=True):
                if digit is not None and participant.inband_dtmf:
                    digits.append((participant, digit, "inband"))
        # at the room's rate: an 8 kHz copy would hide a wideband talker's upper band
        energies = detector.frame_energies(frames) * (NARROW_SAMPLES / frames.shape[1])
        loud = (energies > VOICE_POWER * NARROW_SAMPLES).tolist()
        audible = (energies > NOISE_FLOOR * NARROW_SAMPLES).tolist()
        sounding = (
            [a or p.voice.talking for a, p in zip(audible, members, strict=True)]
            if mixing
            else [False] * n
        )
        contributors = select_contributors(members, loud, sounding, talk_changes)
        mixed = self.mixer.mix_contributors(frames, contributors)
        shared_row = len(contributors)
        if recording is not None:
            recording.push(mixed[shared_row], rate)
        row_of = [shared_row] * n
        for row, i in enumerate(contributors):
            row_of[i] = row
        self._send(members, mixed, row_of, shared_row, self._lone_talker(members, contributors,
                                                                        mixing))
        return digits

    def _lone_talker(
        self, members: list[Participant], contributors: list[int], mixing: bool
    ) -> Participant | None:
        """The member heard alone, whose packets its codec's listeners get as they came: the
        only contributor, or, while nobody is heard, the last one (its pauses go on as it sent
        them: each switch between its packets and our encoder's breaks the listener's decoder,
        PESQ 4.23 instead of 4.45 for Opus speech), as long as it may still be heard and sends
        packets (a pause without packets, DTX, is our encoder's again: a gap in our sequence
        numbers there would read as loss)."""
        if len(contributors) == 1:
            lone = members[contributors[0]]
            self.lone = lone.call_key
            return lone
        if contributors or self.lone is None:
            self.lone = None
            return None
        lone = next((p for p in members if p.call_key == self.lone), None)
        if lone is None or not mixing or lone.muted or lone.on_hold or lone.held or (
            lone.inband_dtmf and lone.inband.tone_present  # type: ignore[union-attr]
        ) or lone.stream is None or lone.stream.payload is None:  # no packet: DTX, or it left
            self.lone = None
            return None
        return lone

    def _send(
        self,
        members: list[Participant],
        mixed: np.ndarray,
        row_of: list[int],
        shared_row: int,
        solo: Participant | None,
    ) -> None:
        """Send each member its frame. While one member alone is heard, listeners of its codec
        get its own packet as it came (a second encoding, G.722's or Opus', costs quality:
        PESQ 0.25 and 0.6 here), and the shared encoder is skipped. When that member's packet is
        missing, they get none either (a gap in our sequence numbers): their own decoder
        rebuilds the frame from the next packet's FEC, or conceals it, as on a direct call; a
        frame encoded by our encoder in between would break their decoder's continuity (at 10 %
        loss, PESQ 1.7 instead of 2.8)."""
        passthrough: tuple[Hashable, bytes | None] | None = None
        if solo is not None and solo.stream is not None:
            passthrough = (_encoder_key(solo.codec), solo.stream.payload)
        total: dict[Hashable, bytes] = {}
        music: np.ndarray | None = None
        for participant, row in zip(members, row_of, strict=True):
            if participant.on_hold:
                continue
            state = participant.stream
            assert state is not None
            if participant.held:
                if music is None:
                    music = self._hold_music_frame()
                participant.send_payload(state.encoder().encode(state.prompt_up.process(music)))
                continue
            rate = native_rate(participant.codec)
            prompt = participant.prompts.next_frame(rate=rate) if participant.prompts.busy else None
            if prompt is None and participant.volume_db == 0 and not participant.deaf:
                if row == shared_row:
                    key = _encoder_key(participant.codec)
                    forward = passthrough is not None and participant is not solo
                    if forward and passthrough[0] == key:  # type: ignore[index]
                        if passthrough[1] is None:
                            participant.drop_payload()
                        else:
                            participant.send_payload(passthrough[1])
                        continue
                    payload = total.get(key)
                    if payload is None:
                        output = self.shared.get(key)
                        if output is None:
                            output = self.shared[key] = _SharedOutput(participant.codec, self.rate)
                        heard = output.resampler.process(mixed[shared_row])
                        payload = total[key] = output.encoder.encode(heard)
                    participant.send_payload(payload)
                else:
                    heard = state.from_room.process(mixed[row])
                    participant.send_payload(state.encoder().encode(heard))
                continue
            heard = state.silence() if participant.deaf else state.from_room.process(mixed[row])
            if participant.volume_db:
                gain = 10.0 ** (participant.volume_db / 20.0)
                heard = np.clip(np.rint(heard * gain), -32768, 32767).astype(np.int16)
            if prompt is not None:
                frame, replace = prompt
                if frame.size != heard.size:  # an 8 kHz prompt
                    frame = state.prompt_up.process(frame)
                heard = overlay(heard, frame, replace=replace)
            participant.send_payload(state.encoder().encode(heard))

    def _hold_music_frame(self) -> np.ndarray:
        start = self.hold_position
        self.hold_position = (start + NARROW_SAMPLES) % HOLD_MUSIC.size
        return HOLD_MUSIC[start : start + NARROW_SAMPLES]


def _decode(participant: Participant, state: StreamState) -> np.ndarray:
    """This tick's frame of the member at its codec's rate: decoded, rebuilt or concealed."""
    codec = participant.codec
    state.payload = None
    if isinstance(codec, Codec):  # G.711 in a wideband room: table decode, fade on loss
        frame = np.zeros(NARROW_SAMPLES, np.int16)
        payload = participant.next_payload()
        state.payload = payload if payload is not None and len(payload) == NARROW_SAMPLES else None
        if payload is None:
            faded = participant.concealer.fade()
            if faded is not None:
                frame[:] = faded
        else:
            codec.decode_into(payload, frame)
        return frame
    payload = participant.jitter.pop()
    decoder = state.decoder
    if isinstance(decoder, OpusDecoder):
        if payload is None:
            if not participant.jitter.stats.played:
                return state.silence()  # nothing yet to conceal
            return decoder.recover(participant.jitter.upcoming())
        corrupt = decoder.corrupt
        frame = decoder.decode(payload)
        participant.counters.bad_packets += decoder.corrupt - corrupt
        if decoder.corrupt == corrupt:
            state.payload = payload
        return frame
    assert decoder is not None and state.concealer is not None
    if payload is None:
        faded = state.concealer.fade()
        return state.silence() if faded is None else faded.copy()
    if len(payload) != codec.clock_rate // 50:  # G.722: 160 bytes for 20 ms
        participant.counters.bad_packets += 1
    else:
        state.payload = payload
    frame = decoder.decode(payload)
    state.concealer.good(frame)
    return frame

