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
