"""Tone generation and analysis for tests, scripts and prompts.

Audio checks in this project are numeric: send distinct tones, then read levels back with an
FFT. Levels are in dB relative to full scale (a sine of amplitude 32768 reads 0 dBFS).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

FULL_SCALE = 32768.0
SILENCE_DB = -200.0
"""Level reported for a frequency with no energy at all (instead of -inf)."""


def _sine_values(
    freq_hz: float, start: int, count: int, amplitude: float, rate: int, phase: float
) -> np.ndarray:
    t = np.arange(start, start + count, dtype=np.float64)
    wave = amplitude * np.sin(2.0 * math.pi * freq_hz * t / rate + phase)
    return np.clip(np.rint(wave), -32768, 32767).astype(np.int16)


def sine(
    freq_hz: float,
    duration_s: float,
    amplitude: float = 8000,
    rate: int = 8000,
    phase: float = 0.0,
) -> np.ndarray:
    """A rounded, saturated int16 sine of round(duration_s * rate) samples."""
    return _sine_values(freq_hz, 0, round(duration_s * rate), amplitude, rate, phase)


def _spectrum_dbfs(samples: np.ndarray) -> np.ndarray:
    """Hann-windowed magnitude spectrum scaled so a bin-centred sine reads its level in dBFS."""
    data = np.asarray(samples, dtype=np.float64)
    window = np.hanning(data.size)
    magnitude = np.abs(np.fft.rfft(data * window)) * 2.0 / window.sum() / FULL_SCALE
    with np.errstate(divide="ignore"):
        levels = 20.0 * np.log10(magnitude)
    return np.maximum(levels, SILENCE_DB)


def tone_levels(
    samples: np.ndarray, freqs: Sequence[float], rate: int = 8000
) -> dict[float, float]:
    """Level in dBFS of each frequency: the peak bin within +-2 bins of it (Hann + rFFT)."""
    levels = _spectrum_dbfs(samples)
    bin_hz = rate / len(samples)
    result: dict[float, float] = {}
    for freq in freqs:
        centre = round(freq / bin_hz)
        low, high = max(centre - 2, 0), min(centre + 3, levels.size)
        result[freq] = float(levels[low:high].max()) if low < high else SILENCE_DB
    return result


def dominant_frequencies(
    samples: np.ndarray,
    rate: int = 8000,
    count: int = 3,
    within_db: float = 30.0,
    floor_db: float = -90.0,
) -> list[float]:
    """The strongest spectral peaks, loudest first, in Hz (parabolic interpolation on dB).

    Peaks more than `within_db` below the loudest (Hann sidelobes sit at -31.5 dB) or below
    `floor_db` are ignored, so silence gives [] and one tone gives one frequency.
    """
    levels = _spectrum_dbfs(samples)
    if levels.size < 3:
        return []
    inner = levels[1:-1]
    is_peak = (inner > levels[:-2]) & (inner >= levels[2:]) & (inner > floor_db)
    peaks = np.nonzero(is_peak)[0] + 1
    if peaks.size == 0:
        return []
    loudest = levels[peaks].max()
    peaks = peaks[levels[peaks] >= loudest - within_db]
    peaks = peaks[np.argsort(-levels[peaks], kind="stable")][:count]
    bin_hz = rate / len(samples)
    result = []
    for k in peaks:
        left, centre, right = levels[k - 1], levels[k], levels[k + 1]
        curvature = left - 2.0 * centre + right
        offset = 0.5 * (left - right) / curvature if curvature != 0 else 0.0
        result.append(float((k + offset) * bin_hz))
    return result


class ToneSource:
    """An endless tone cut into frames with continuous phase (no click between frames)."""

    def __init__(self, freq: float, amplitude: float, rate: int = 8000) -> None:
        self.freq = freq
        self.amplitude = amplitude
        self.rate = rate
        self._position = 0

    def next_frame(self, samples: int = 160) -> np.ndarray:
        """The next `samples` samples; frames concatenated equal one long `sine`."""
        frame = _sine_values(self.freq, self._position, samples, self.amplitude, self.rate, 0.0)
        self._position += samples
        return frame


DBM0_PEAK = FULL_SCALE / 10 ** (3.17 / 20)
"""Peak amplitude of a 0 dBm0 sine in 16-bit linear G.711 (a full-scale sine is +3.17 dBm0)."""

DTMF_FREQUENCIES: dict[str, tuple[float, float]] = {
    key: (low, high)
    for row, low in zip(("123A", "456B", "789C", "*0#D"), (697.0, 770.0, 852.0, 941.0), strict=True)
    for key, high in zip(row, (1209.0, 1336.0, 1477.0, 1633.0), strict=True)
}


def dtmf_tones(
    digits: str,
    level_dbm0: float = -10.0,
    on_ms: int = 50,
    off_ms: int = 50,
    twist_db: float = 0.0,
    rate: int = 8000,
) -> np.ndarray:
    """Key tones as a phone sends them in-band: each tone pair at `level_dbm0` per frequency,
    the high tone `twist_db` louder (negative: quieter), separated by silence."""
    low_amplitude = DBM0_PEAK * 10 ** (level_dbm0 / 20)
    high_amplitude = low_amplitude * 10 ** (twist_db / 20)
    on, off = round(on_ms * rate / 1000), round(off_ms * rate / 1000)
    t = np.arange(on) / rate
    parts = []
    for digit in digits:
        low, high = DTMF_FREQUENCIES[digit.upper()]
        pair = low_amplitude * np.sin(2 * np.pi * low * t) + high_amplitude * np.sin(
            2 * np.pi * high * t
        )
        parts.append(np.clip(np.rint(pair), -32768, 32767).astype(np.int16))
        parts.append(np.zeros(off, np.int16))
    return np.concatenate(parts) if parts else np.zeros(0, np.int16)


def hold_music(seconds: float = 8.0, rate: int = 8000) -> np.ndarray:
    """A soft, looping arpeggio (C major, then A minor) for callers the API put on hold.

    Generated, not recorded: nothing to license and nothing to ship. Each note fades in and out,
    so the loop has no clicks; its length is a whole number of 20 ms frames."""
    notes = (261.63, 329.63, 392.0, 523.25, 220.0, 261.63, 329.63, 440.0)
    note_samples = int(seconds * rate) // len(notes) // 160 * 160
    t = np.arange(note_samples) / rate
    envelope = np.sin(np.pi * np.arange(note_samples) / note_samples) ** 2
    amplitude = DBM0_PEAK * 10 ** (-18 / 20)
    parts = [
        amplitude * envelope * (np.sin(2 * np.pi * f * t) + 0.3 * np.sin(4 * np.pi * f * t))
        for f in notes
    ]
    return np.rint(np.concatenate(parts)).astype(np.int16)
