"""What one simulated participant measures on the stream it receives from the bridge.

Two halves: `RtpStats` runs per packet (RFC 3550 loss and jitter, lateness) and so is a few
integer operations; `Recorder` keeps the payloads and digests them in batches with numpy (burst
onsets for the mouth-to-ear delay, the audio of the analysis window for the FFT check), so the
per-packet path never touches numpy.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bridge.media.g711 import ALAW_TO_LINEAR, FRAME_SAMPLES, ULAW_TO_LINEAR
from bridge.media.tones import FULL_SCALE, SILENCE_DB
from bridge.tools.loadplan import BURST_HZ, RATE

LATE_SECONDS = 0.040  # a packet arriving this much later than its timestamp says is late
BURST_DB = -40.0  # a frame holds the burst when its level at BURST_HZ passes this
_TS_SECONDS = 1.0 / RATE
DECODE_TABLES = {"PCMU": ULAW_TO_LINEAR, "PCMA": ALAW_TO_LINEAR}


@dataclass(slots=True)
class RtpStats:
    """RFC 3550 receiver statistics: sequence gaps (A.1/A.3) and interarrival jitter (A.8).

    Lateness: transit (arrival minus the timestamp's time) over the smallest transit seen so
    far, i.e. how much later than the fastest packet this one came; over 40 ms it is late.
    """

    received: int = 0
    late: int = 0
    reordered: int = 0
    jitter: float = 0.0  # seconds, the RFC 3550 running estimate
    max_jitter: float = 0.0
    base_seq: int = 0
    max_seq: int = 0
    cycles: int = 0
    first_ts: int = 0
    last_transit: float = 0.0
    min_transit: float = float("inf")

    def receive(self, seq: int, ts: int, now: float) -> None:
        """Account one packet: sequence number, RTP timestamp, arrival (monotonic seconds)."""
        if self.received == 0:
            self.base_seq = self.max_seq = seq
            self.first_ts = ts
        else:
            delta = (seq - self.max_seq) & 0xFFFF
            if 0 < delta < 0x8000:
                if seq < self.max_seq:
                    self.cycles += 0x10000
                self.max_seq = seq
            else:
                self.reordered += 1
        self.received += 1
        transit = now - ((ts - self.first_ts) & 0xFFFF_FFFF) * _TS_SECONDS
        if self.received > 1:
            self.jitter += (abs(transit - self.last_transit) - self.jitter) / 16.0
            if self.jitter > self.max_jitter:
                self.max_jitter = self.jitter
        self.last_transit = transit
        if transit < self.min_transit:
            self.min_transit = transit
        elif transit - self.min_transit > LATE_SECONDS:
            self.late += 1

    @property
    def expected(self) -> int:
        return self.cycles + self.max_seq - self.base_seq + 1 if self.received else 0

    @property
    def lost(self) -> int:
        return max(0, self.expected - self.received)


@dataclass
class Recorder:
    """Payloads as they arrive, digested in batches: burst onsets and the analysis window."""

    codec: str
    window: tuple[float, float] = (float("inf"), float("inf"))
    payloads: list[bytes] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    onsets: list[float] = field(default_factory=list)
    kept: list[np.ndarray] = field(default_factory=list)
    burst_on: bool = False

    def add(self, payload: bytes, now: float) -> None:
        self.payloads.append(payload)
        self.arrivals.append(now)

    def digest(self) -> None:
        """Decode what came since the last digest; note burst onsets, keep the window's audio."""
        if not self.payloads:
            return
        codes = np.frombuffer(b"".join(self.payloads), np.uint8).reshape(-1, FRAME_SAMPLES)
        arrivals = np.asarray(self.arrivals)
        self.payloads, self.arrivals = [], []
        samples = DECODE_TABLES[self.codec][codes]
        flags = frame_levels(samples, BURST_HZ) > BURST_DB
        previous = np.concatenate(([self.burst_on], flags[:-1]))
        self.onsets.extend(arrivals[flags & ~previous].tolist())
        self.burst_on = bool(flags[-1])
        inside = (arrivals >= self.window[0]) & (arrivals < self.window[1])
        if inside.any():
            self.kept.append(samples[inside].reshape(-1))

    def audio(self) -> np.ndarray:
        return np.concatenate(self.kept) if self.kept else np.zeros(0, np.int16)


_HANN = np.hanning(FRAME_SAMPLES)


def frame_levels(frames: np.ndarray, freq: float) -> np.ndarray:
    """Level in dBFS at `freq` of each 20 ms frame (rows), Hann-windowed: one matrix product."""
    t = np.arange(FRAME_SAMPLES) / RATE
    basis = np.stack([_HANN * np.cos(2 * np.pi * freq * t), _HANN * np.sin(2 * np.pi * freq * t)])
    parts = frames.astype(np.float64) @ basis.T
    magnitude = np.hypot(parts[:, 0], parts[:, 1]) * 2.0 / _HANN.sum() / FULL_SCALE
    with np.errstate(divide="ignore"):
        return np.maximum(20.0 * np.log10(magnitude), SILENCE_DB)


def levels_at(samples: np.ndarray, freqs: np.ndarray, rate: int = RATE) -> np.ndarray:
    """dBFS of each frequency (peak bin within +-2 bins, Hann + rFFT), for many at once.

    The same measure as `bridge.media.tones.tone_levels`, vectorised for hundreds of tones."""
    return peaks(spectrum_db(samples), bins_of(freqs, samples.size, rate))


def spectrum_db(samples: np.ndarray) -> np.ndarray:
    """Hann-windowed rFFT in dBFS: a full-scale sine on a bin reads 0."""
    data = samples.astype(np.float64)
    window = np.hanning(data.size)
    magnitude = np.abs(np.fft.rfft(data * window)) * 2.0 / window.sum() / FULL_SCALE
    with np.errstate(divide="ignore"):
        return np.maximum(20.0 * np.log10(magnitude), SILENCE_DB)


def bins_of(freqs: Any, size: int, rate: int = RATE) -> np.ndarray:
    return np.rint(np.asarray(freqs, np.float64) / (rate / size)).astype(int)


def peaks(spectrum: np.ndarray, centres: np.ndarray, reach: int = 2) -> np.ndarray:
    offsets = np.arange(-reach, reach + 1)
    bins = np.clip(centres[:, None] + offsets[None, :], 0, spectrum.size - 1)
    return spectrum[bins].max(axis=1)


LEAK_SURROUNDINGS_HZ = (1.0, 1.5, 2.0)
"""Either side of a tone, where a pure tone on a bin leaves nothing (Hann: only the bins next
to its own, so at least 2 bins away), but a skirt is as loud as on the tone's bin; within half
the plan's smallest step (4 Hz), so no other tone's bins."""


def leak_surroundings(size: int, rate: int = RATE) -> np.ndarray:
    """`LEAK_SURROUNDINGS_HZ` as bin offsets, both sides, for an analysis of `size` samples."""
    bins = sorted({max(2, round(hz * size / rate)) for hz in LEAK_SURROUNDINGS_HZ})
    return np.array([-b for b in reversed(bins)] + bins)


def tone_report(
    audio: np.ndarray, tones: list[list[int]], room: int, own: int | None
) -> dict[str, Any]:
    """Levels a listener's audio should show: room-mates' tones loud, its own and other rooms'
    absent.

    Another room's tone counts for what stands out of the spectrum around it (`other_room_db`:
    the power on its bin less that of the loudest of its surroundings), because a leak is a
    pure tone, a peak, while a room-mate's concealed or skipped frame spreads that room-mate's
    tone into a smooth skirt as loud beside a tone as on it: one such frame in a 2 s window reads
    -50 dBFS 13 Hz away, -44 dBFS 4 Hz away, where other rooms' tones lie at 100 and 350 rooms.
    The price: a leak much shorter than the window is a skirt too, and a weak leak on a loud
    skirt is missed (a -45 dBFS leak 4 Hz from a skipped tone is caught ~9 times in 10).
    `floor_db` is the median level midway between the plan's tones. The audio is analysed over
    whole seconds so that every (integer) tone falls on a bin."""
    audio = whole_seconds(audio)
    spectrum = spectrum_db(audio)
    mates = tones[room]
    wanted = [f for f in mates if f != own]
    plan = sorted({f for freqs in tones for f in freqs})
    others = [
        f
        for r, freqs in enumerate(tones)
        if r != room
        for f in freqs
        if min(abs(f - mate) for mate in mates) > 3
    ]
    probes = [(a + b) / 2 for a, b in itertools.pairwise(plan)] or [plan[0] + 100.0]
    heard = peaks(spectrum, bins_of(wanted, audio.size)).tolist()
    report: dict[str, Any] = {"heard_db": dict(zip(map(str, wanted), heard, strict=True))}
    report["own_db"] = float(peaks(spectrum, bins_of([own], audio.size))[0]) if own else None
    report["floor_db"] = float(np.median(peaks(spectrum, bins_of(probes, audio.size))))
    if others:
        centres = bins_of(others, audio.size)
        on_bin = spectrum[centres]
        offsets = leak_surroundings(audio.size)
        surroundings = np.clip(centres[:, None] + offsets, 0, spectrum.size - 1)
        standing = _less_power(on_bin, spectrum[surroundings].max(axis=1))
        loudest = int(np.argmax(standing))
        report["other_room_db"] = float(standing[loudest])
        report["other_room_hz"] = others[loudest]
        report["other_room_raw_db"] = float(on_bin[loudest])
    return report


def whole_seconds(audio: np.ndarray, rate: int = RATE) -> np.ndarray:
    """`audio` cut or zero-padded to the nearest whole number of seconds (at least one)."""
    size = rate * max(1, round(audio.size / rate))
    return np.pad(audio[:size], (0, max(0, size - audio.size)))


def _less_power(levels: np.ndarray, beside: np.ndarray) -> np.ndarray:
    """dBFS of `levels` less the power of `beside`: what stands out of its surroundings."""
    power = 10.0 ** (levels / 10.0) - 10.0 ** (beside / 10.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.maximum(10.0 * np.log10(np.maximum(power, 0.0)), SILENCE_DB)


def rms_dbfs(samples: np.ndarray) -> float:
    """Overall level, for speech where no single frequency can be checked."""
    if samples.size == 0:
        return SILENCE_DB
    power = float(np.mean(samples.astype(np.float64) ** 2))
    return max(SILENCE_DB, 10.0 * np.log10(power / FULL_SCALE**2)) if power > 0 else SILENCE_DB
