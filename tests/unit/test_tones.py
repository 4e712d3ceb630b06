"""Tone generation and FFT analysis helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bridge.media.tones import SILENCE_DB, ToneSource, dominant_frequencies, sine, tone_levels


def test_sine_exact_samples() -> None:
    tone = sine(1000, 0.001)  # eighth of a turn per sample at 8 kHz
    assert tone.dtype == np.int16
    assert tone.tolist() == [0, 5657, 8000, 5657, 0, -5657, -8000, -5657]


def test_sine_length_phase_and_saturation() -> None:
    assert sine(440, 0.02).shape == (160,)
    assert sine(1000, 0.001, phase=math.pi / 2)[:3].tolist() == [8000, 5657, 0]
    loud = sine(1000, 0.001, amplitude=40000)
    assert loud.max() == 32767 and loud.min() == -32768
    assert sine(1000, 0.001, rate=16000).shape == (16,)


def test_tone_source_frames_join_without_clicks() -> None:
    source = ToneSource(437.5, 12000)
    streamed = np.concatenate([source.next_frame() for _ in range(25)] + [source.next_frame(80)])
    assert streamed.tolist() == sine(437.5, 0.51, amplitude=12000).tolist()


def test_tone_levels_in_dbfs() -> None:
    full = sine(1000, 1.0, amplitude=32768)
    quiet = sine(1000, 1.0, amplitude=8000)
    levels = tone_levels(full, [1000])
    assert levels[1000] == pytest.approx(0.0, abs=0.01)
    assert tone_levels(quiet, [1000])[1000] == pytest.approx(
        20 * math.log10(8000 / 32768), abs=0.01
    )
    # a period-8 rounded sine has only odd harmonics: nothing at all at 2000 Hz
    assert tone_levels(quiet, [2000]) == {2000: SILENCE_DB}
    assert tone_levels(sine(1013, 1.0), [2000])[2000] < -90


def test_tone_levels_finds_off_bin_tone_within_two_bins() -> None:
    tone = sine(1013, 0.02, amplitude=8000)  # 50 Hz bins: 1013 Hz is off-centre
    level = tone_levels(tone, [1000])[1000]
    assert -12.25 - 1.5 < level < -12.25 + 0.01  # Hann scalloping loss is at most 1.42 dB


def test_silence_reads_as_floor() -> None:
    assert tone_levels(np.zeros(160, np.int16), [440.0]) == {440.0: SILENCE_DB}
    assert dominant_frequencies(np.zeros(160, np.int16)) == []


def test_dominant_frequencies_loudest_first() -> None:
    mix = (
        sine(440, 1.0, amplitude=8000).astype(np.int32)
        + sine(1000, 1.0, amplitude=4000)
        + sine(2500, 1.0, amplitude=2000)
    ).astype(np.int16)
    found = dominant_frequencies(mix, count=3)
    assert found == [
        pytest.approx(440, abs=0.5),
        pytest.approx(1000, abs=0.5),
        pytest.approx(2500, abs=0.5),
    ]


def test_dominant_frequencies_ignores_sidelobes_and_interpolates() -> None:
    found = dominant_frequencies(sine(1013, 0.1), count=3)
    assert found == [pytest.approx(1013, abs=1.0)]
    assert dominant_frequencies(sine(700, 0.1), count=1) == [pytest.approx(700, abs=0.1)]
