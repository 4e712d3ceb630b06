"""The plan of a load test: who dials which room when, who talks at which tone, when bursts go.

The coordinator and every load process derive the same plan from a handful of numbers, so only
those numbers cross the process boundary, and a listener in one process can be matched against
a talker's bursts sent from another (all processes read the same CLOCK_MONOTONIC).
"""

from __future__ import annotations

import math
import wave
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bridge.media.g711 import CODECS, FRAME_SAMPLES
from bridge.media.tones import sine

RATE = 8000
FRAME_SECONDS = 0.020
FREQ_LOW = 307  # prime: with an integer step no talker's 2nd/3rd harmonic lands on another tone
FREQ_HIGH = 3300
MIN_STEP = 4  # Hz between tones; below this the 2 s analysis window cannot part them
BURST_HZ = 3600  # the delay marker, above every talker tone
BURST_FRAMES = 3  # 60 ms: whole frames, so the burst starts on a frame edge in the mix too
BURST_PERIOD = 2.0  # s between bursts: far more than any delay, so matching is unambiguous
BURST_OFFSET = 1.0  # first burst this long after the plan's start
LOOP_FRAMES = 50  # tone frames precomputed: 1 s, a whole number of cycles for integer Hz
MARKER, TALKER, LISTENER = "marker", "talker", "listener"


@dataclass(frozen=True)
class Member:
    """One simulated participant. `dial_at` is seconds after the plan's start."""

    index: int
    room: str
    room_index: int
    role: str
    tone_hz: int | None
    dial_at: float

    @property
    def talks(self) -> bool:
        return self.role != LISTENER


@dataclass(frozen=True)
class PlanSpec:
    """The numbers a plan is derived from (what the coordinator ships to each process)."""

    rooms: int
    per_room: int
    talkers: int
    ramp: float  # calls per second, all processes together
    codec: str = "PCMU"
    wav: str | None = None
    room_prefix: str = "load"
    per_call_addresses: bool = False  # each call its own 127.64.x.y source (shared RTP ports)

    def __post_init__(self) -> None:
        if self.rooms < 1 or self.per_room < 2:
            raise ValueError("need at least one room of two")
        if not 1 <= self.talkers <= self.per_room:
            raise ValueError("talkers must be between 1 and the room size")
        if self.ramp <= 0:
            raise ValueError("ramp must be positive")
        if self.codec not in CODECS:
            raise ValueError(f"codec must be one of {', '.join(CODECS)}")

    @property
    def participants(self) -> int:
        return self.rooms * self.per_room

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def room_name(spec: PlanSpec, room: int) -> str:
    return f"{spec.room_prefix}{room:03d}"


def members(spec: PlanSpec) -> list[Member]:
    """Everyone, in dialling order. Rooms are interleaved so they fill together, as a real
    ramp would, and so a round-robin split gives every process a share of every room."""
    tones = tone_plan(spec.rooms, spec.talkers)
    result = []
    for index in range(spec.participants):
        room, position = index % spec.rooms, index // spec.rooms
        role = MARKER if position == 0 else TALKER if position < spec.talkers else LISTENER
        tone = tones[room][position] if position < spec.talkers else None
        result.append(Member(index, room_name(spec, room), room, role, tone, index / spec.ramp))
    return result


def tone_plan(rooms: int, talkers: int) -> list[list[int]]:
    """Integer tone frequencies per room, one per talker, all distinct while they fit.

    A room's talkers are spread over the band (talker k of room r takes slot r + k * rooms), so
    the third-order intermodulation of two room-mates (2 f1 - f2) falls outside the band or on a
    room-mate, never on another room's tone; the step is the widest that keeps every 2nd and
    3rd harmonic at least 3 Hz from every tone.
    """
    total = rooms * talkers
    capacity = (FREQ_HIGH - FREQ_LOW) // MIN_STEP + 1
    step = _clean_step(min(total, capacity))
    slots = [(r + k * rooms) % capacity for r in range(rooms) for k in range(talkers)]
    freqs = [FREQ_LOW + step * slot for slot in slots]
    return [freqs[r * talkers : (r + 1) * talkers] for r in range(rooms)]


def _clean_step(count: int) -> int:
    widest = 61 if count <= 1 else max(MIN_STEP, min(61, (FREQ_HIGH - FREQ_LOW) // (count - 1)))
    for step in range(widest, MIN_STEP - 1, -1):
        freqs = FREQ_LOW + step * np.arange(count)
        harmonics = np.concatenate([2 * freqs, 3 * freqs])
        position = np.clip(np.searchsorted(freqs, harmonics), 1, count - 1)
        nearest = np.minimum(
            np.abs(harmonics - freqs[position - 1]), np.abs(harmonics - freqs[position])
        )
        if count < 2 or nearest.min() >= 3:
            return step
    return widest


def next_burst(start: float, now: float) -> float:
    """The first burst time (monotonic) at or after `now` of a plan started at `start`."""
    k = max(0, math.ceil((now - start - BURST_OFFSET) / BURST_PERIOD))
    return start + BURST_OFFSET + k * BURST_PERIOD


def amplitude(talkers: int) -> float:
    """Loud enough to read well over G.711 noise, quiet enough that the sum never clips."""
    return min(4000.0, 20000.0 / talkers)


def tone_frames(freq: int, level: float, codec: str) -> list[bytes]:
    """One second of a tone as encoded payloads; integer Hz makes the loop seamless."""
    samples = sine(freq, LOOP_FRAMES * FRAME_SECONDS, level)
    return _encode_frames(samples, codec)


def burst_samples(level: float) -> np.ndarray:
    """The delay marker's frames as linear samples (rows): the sender adds them to its tone.

    Added, not sent instead: a 60 ms gap in the marker's tone spreads it ~15 Hz wide at about
    -48 dBFS in the 2 s analysis window, where at 100 rooms the next room's tone sits 13 Hz
    away, and the FFT check then reported a leak that was not there."""
    samples = sine(BURST_HZ, BURST_FRAMES * FRAME_SECONDS, level)
    return samples.reshape(BURST_FRAMES, -1)


def wav_frames(path: str | Path, codec: str, offset_s: float = 0.0) -> list[bytes]:
    """A WAV file (16-bit, mono or first channel) as 8 kHz encoded frames, looped by the caller.

    Each talker starts at its own offset so two talkers never say the same word at once."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: need 16-bit PCM, got {8 * wav.getsampwidth()}-bit")
        raw = np.frombuffer(wav.readframes(wav.getnframes()), np.int16)
        samples = raw[:: wav.getnchannels()].astype(np.float64)
        rate = wav.getframerate()
    if rate != RATE:
        positions = np.arange(0, len(samples) - 1, rate / RATE)
        samples = np.interp(positions, np.arange(len(samples)), samples)
    audio = np.clip(np.rint(samples), -32768, 32767).astype(np.int16)
    if len(audio) < FRAME_SAMPLES:
        raise ValueError(f"{path}: shorter than one 20 ms frame")
    audio = np.roll(audio, -int(offset_s * RATE) % len(audio))
    return _encode_frames(audio[: len(audio) // FRAME_SAMPLES * FRAME_SAMPLES], codec)


def _encode_frames(samples: np.ndarray, codec: str) -> list[bytes]:
    encoded = CODECS[codec].encode(samples)
    return [encoded[i : i + FRAME_SAMPLES] for i in range(0, len(encoded), FRAME_SAMPLES)]
