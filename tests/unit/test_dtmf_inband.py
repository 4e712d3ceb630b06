"""In-band DTMF detector: every key at the levels and twists phones send, through PCMU, and no
false keys from speech (espeak-ng) or a minute of music-like sound."""

from __future__ import annotations

import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from bridge.media.dtmf import DtmfConfig, DtmfDetector
from bridge.media.g711 import ulaw_decode, ulaw_encode
from bridge.media.tones import DBM0_PEAK, dtmf_tones

FRAME = 160
SENTENCES = (
    "Welcome to the conference. Please enter your conference code followed by the pound key.",
    "The quarterly figures are better than expected, and we will ship the new release on Monday.",
    "One two three four five six seven eight nine zero, star, pound.",
    "She sells sea shells by the sea shore; the shells she sells are surely sea shells.",
    "Could everyone who is not speaking please mute their line? Thank you very much.",
)


def through_pcmu(samples: np.ndarray) -> np.ndarray:
    return ulaw_decode(ulaw_encode(samples))


def detect(*signals: np.ndarray, detector: DtmfDetector | None = None) -> list[str]:
    """Run the detector over one or more participants' audio, frame by frame, like a room.

    Returns each participant's keys as a string, in order."""
    detector = detector or DtmfDetector()
    length = max(len(s) for s in signals)
    length += -length % FRAME + 4 * FRAME  # trailing silence lets the last key finish
    matrix = np.zeros((len(signals), length), np.int16)
    for row, signal in enumerate(signals):
        matrix[row, : len(signal)] = signal
    states = [detector.new_state() for _ in signals]
    found = [""] * len(signals)
    for start in range(0, length, FRAME):
        for row, key in enumerate(detector.process(matrix[:, start : start + FRAME], states)):
            if key is not None:
                found[row] += key
    return found


@pytest.mark.parametrize("level", [-10.0, -25.0])
@pytest.mark.parametrize("twist", [-4.0, 0.0, 4.0])
def test_every_key_exactly_once_through_pcmu(level: float, twist: float) -> None:
    sequence = "147*2580369#ABCD" + "1234#"
    audio = through_pcmu(dtmf_tones(sequence, level_dbm0=level, twist_db=twist))
    assert detect(audio) == [sequence]


@pytest.mark.parametrize("offset", range(0, FRAME, 20))
def test_alignment_to_the_frame_does_not_matter(offset: int) -> None:
    audio = np.concatenate([np.zeros(offset, np.int16), dtmf_tones("5#5", on_ms=45, off_ms=50)])
    assert detect(through_pcmu(audio)) == ["5#5"]


def test_short_blips_are_rejected_and_long_presses_count_once() -> None:
    short = dtmf_tones("7", on_ms=20, off_ms=100)
    long = dtmf_tones("8", on_ms=800, off_ms=100)
    assert detect(through_pcmu(np.concatenate([short, long, short]))) == ["8"]


def test_same_key_twice_needs_a_gap_and_a_dropout_is_not_a_repeat() -> None:
    press = dtmf_tones("9", on_ms=60, off_ms=0)
    dropout = np.zeros(40, np.int16)  # 5 ms: a lost sample burst mid-press
    gap = np.zeros(400, np.int16)  # 50 ms between presses
    assert detect(np.concatenate([press, dropout, press])) == ["9"]
    assert detect(np.concatenate([press, gap, press])) == ["99"]


def test_too_quiet_and_too_much_twist_are_not_keys() -> None:
    quiet = dtmf_tones("1", level_dbm0=-40.0, on_ms=100)
    twisted = dtmf_tones("2", level_dbm0=-10.0, twist_db=12.0, on_ms=100)
    reverse = dtmf_tones("3", level_dbm0=-10.0, twist_db=-12.0, on_ms=100)
    assert detect(quiet, twisted, reverse) == ["", "", ""]


def test_single_tones_and_off_frequency_pairs_are_not_keys() -> None:
    t = np.arange(8000) / 8000
    amplitude = DBM0_PEAK * 10 ** (-10 / 20)
    single = amplitude * np.sin(2 * np.pi * 697 * t)
    off_frequency = amplitude * (np.sin(2 * np.pi * 730 * t) + np.sin(2 * np.pi * 1270 * t))
    signals = [s.astype(np.int16) for s in (single, off_frequency)]
    assert detect(*signals) == ["", ""]


def test_rows_are_independent_and_tone_present_marks_only_the_pressing_row() -> None:
    detector = DtmfDetector()
    states = [detector.new_state() for _ in range(3)]
    tone = dtmf_tones("6", on_ms=100, off_ms=0)
    speechless = np.zeros_like(tone)
    noise = np.random.default_rng(1).normal(0, 800, len(tone)).astype(np.int16)
    matrix = np.stack([speechless, tone, noise])
    present = []
    keys = []
    for start in range(0, len(tone), FRAME):
        keys.append(detector.process(matrix[:, start : start + FRAME], states))
        present.append([s.tone_present for s in states])
    assert [k for row in keys for k in row if k] == ["6"]
    assert all(row[1] for row in present[1:]) and not any(row[0] or row[2] for row in present)


def test_rows_may_join_and_leave_between_ticks() -> None:
    detector = DtmfDetector()
    a, b, c = (detector.new_state() for _ in range(3))
    tone = dtmf_tones("0", on_ms=100, off_ms=100)
    frames = tone.reshape(-1, FRAME)
    found = []
    for i, frame in enumerate(frames):
        states = [a, b] if i < 2 else [b] if i < 4 else [c, b]  # a leaves, c joins mid-press
        matrix = np.zeros((len(states), FRAME), np.int16)
        matrix[states.index(b)] = frame
        found += [k for k in detector.process(matrix, states) if k]
    assert found == ["0"]


def test_bad_frame_shapes_raise_clearly() -> None:
    detector = DtmfDetector()
    with pytest.raises(ValueError, match="frames"):
        detector.process(np.zeros((1, 80), np.int16), [detector.new_state()])
    with pytest.raises(ValueError, match="states"):
        detector.process(np.zeros((2, FRAME), np.int16), [detector.new_state()])
    with pytest.raises(ValueError):
        DtmfConfig(min_tone_windows=0)


def espeak_8k(text: str, voice: str, directory: Path) -> np.ndarray:
    """Speech from espeak-ng, resampled to 8 kHz by sox (both installed by scripts/setup.sh)."""
    raw, out = directory / "raw.wav", directory / "speech.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", str(out)], check=True)
    with wave.open(str(out)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), np.int16)


@pytest.mark.parametrize("voice", ["en", "en+f3", "de", "fr"])
def test_speech_gives_no_keys(voice: str, tmp_path: Path) -> None:
    speech = np.concatenate([espeak_8k(s, voice, tmp_path) for s in SENTENCES])
    assert len(speech) > 8000 * 15
    for gain in (0.5, 1.0, 2.0):  # quiet, as spoken, and loud (clipping adds harmonics)
        loud = np.clip(speech.astype(np.float64) * gain, -32768, 32767).astype(np.int16)
        assert detect(through_pcmu(loud)) == [""]


def music_like(seconds: float, seed: int) -> np.ndarray:
    """A minute of melody over chords: notes of the tempered scale (some within a few Hz of the
    DTMF frequencies) with harmonics, vibrato and decaying envelopes, two or three at a time."""
    rng = np.random.default_rng(seed)
    rate = 8000
    out = np.zeros(int(seconds * rate))
    midi_notes = np.arange(45, 96)  # A2 .. B6
    position = 0
    while position < len(out):
        length = int(rate * rng.choice([0.125, 0.25, 0.5]))
        t = np.arange(length) / rate
        envelope = np.exp(-t * rng.uniform(1.0, 6.0)) * np.minimum(1.0, t / 0.01)
        for voice in range(rng.integers(2, 4)):
            note = rng.choice(midi_notes)
            base = 440.0 * 2 ** ((note - 69) / 12)
            vibrato = 1 + 0.004 * np.sin(2 * np.pi * 5.5 * t) * (voice == 0)
            phase = 2 * np.pi * np.cumsum(base * vibrato) / rate
            for harmonic, weight in ((1, 1.0), (2, 0.5), (3, 0.3), (4, 0.15)):
                if base * harmonic < rate / 2:
                    out[position : position + length] += (
                        weight * np.sin(harmonic * phase)[: len(out) - position] * envelope[
                            : len(out) - position
                        ]
                    )
        position += length
    out *= 12000 / np.max(np.abs(out))
    return out.astype(np.int16)


def test_a_minute_of_music_gives_no_keys() -> None:
    music = np.concatenate([music_like(30.0, seed=7), music_like(30.0, seed=11)])
    assert detect(through_pcmu(music)) == [""]


def test_pure_intervals_on_dtmf_like_notes_give_no_keys() -> None:
    """Sustained two-note chords near row+column pairs, but with real-instrument harmonics."""
    t = np.arange(4000) / 8000
    chords = []
    for low, high in ((698.5, 1174.7), (784.0, 1318.5), (880.0, 1480.0)):  # F5+D6, G5+E6, A5+F#6
        chord = sum(
            w * (np.sin(2 * np.pi * low * h * t) + np.sin(2 * np.pi * high * h * t))
            for h, w in ((1, 1.0), (2, 0.6), (3, 0.4))
        )
        chords.append((chord * 3000).astype(np.int16))
    assert detect(through_pcmu(np.concatenate(chords))) == [""]


def test_frame_energies_are_the_values_process_computes() -> None:
    rng = np.random.default_rng(7)
    frames = rng.integers(-30000, 30000, (5, 160)).astype(np.int16)
    frames[2] = 0
    detector = DtmfDetector()
    detector.process(frames, [detector.new_state() for _ in range(5)])
    from_process = detector.energies.copy()
    assert np.array_equal(DtmfDetector().frame_energies(frames), from_process)
    assert from_process[2] == 0 and (from_process[[0, 1, 3, 4]] > 0).all()
