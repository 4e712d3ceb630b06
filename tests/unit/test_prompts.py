"""Packaged prompts (format, level, content), the prompt player, and the generating script."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
import wave
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from bridge.media import prompt
from bridge.media.prompt import (
    PROMPT_DIR,
    Prompt,
    PromptPlayer,
    available_prompts,
    load_prompt,
    overlay,
    read_wav,
)
from bridge.media.tones import dominant_frequencies, tone_levels

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_prompts.py"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_prompts", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_prompts = _load_script()
SPEECH = sorted(name for name, recipe in make_prompts.PROMPTS.items() if isinstance(recipe, str))
TONES = sorted(set(make_prompts.PROMPTS) - set(SPEECH))


def dbfs(value: float) -> float:
    return 20.0 * math.log10(max(value, 1e-9) / 32768.0)


def rms_dbfs(samples: np.ndarray) -> float:
    return dbfs(math.sqrt(float(np.mean(samples.astype(np.float64) ** 2))))


def band_share(samples: np.ndarray, low: float, high: float) -> float:
    power = np.abs(np.fft.rfft(samples.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(samples.size, 1.0 / 8000)
    return float(power[(freqs >= low) & (freqs < high)].sum() / power.sum())


def frame_levels(samples: np.ndarray) -> np.ndarray:
    frames = samples[: samples.size // 160 * 160].reshape(-1, 160).astype(np.float64)
    return np.array([rms_dbfs(frame) for frame in frames])


def bursts(samples: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) sample indices of the sounds, split by at least 2 ms of digital silence."""
    sounding = np.convolve(samples != 0, np.ones(16), mode="same") > 0
    edges = np.diff(np.concatenate([[0], sounding.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


@pytest.fixture
def fresh_cache() -> Iterator[None]:
    prompt._load_cached.cache_clear()
    yield
    prompt._load_cached.cache_clear()


# --- the packaged files ------------------------------------------------------------------


def test_every_named_prompt_ships_and_the_script_makes_exactly_those() -> None:
    names = {str(name) for name in Prompt}
    assert set(available_prompts()) == names
    assert set(make_prompts.PROMPTS) == names
    total = sum((PROMPT_DIR / f"{name}.wav").stat().st_size for name in names)
    assert total < 1_000_000


@pytest.mark.parametrize("name", list(Prompt))
def test_prompt_format_length_and_level(name: Prompt) -> None:
    path = PROMPT_DIR / f"{name}.wav"
    with wave.open(str(path), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (8000, 1, 2)
        assert wav.getcomptype() == "NONE"
    samples = load_prompt(name)
    assert samples.dtype == np.int16
    assert 0.1 <= samples.size / 8000 <= 6.0
    assert rms_dbfs(samples) > -35.0
    assert dbfs(float(np.abs(samples.astype(np.int32)).max())) <= -1.0  # headroom: no clipping


@pytest.mark.parametrize("name", SPEECH)
def test_speech_prompts_sound_like_speech(name: str) -> None:
    samples = load_prompt(name)
    assert band_share(samples, 300, 3400) > 0.75  # the telephone speech band
    # Broadband, unlike any tone: real energy both below and above the 1 kHz region.
    assert band_share(samples, 300, 900) > 0.1
    assert band_share(samples, 1100, 3400) > 0.1
    levels = frame_levels(samples)
    assert levels.std() > 5.0  # syllables: the level moves, a tone's does not
    assert levels[0] > -50.0 and levels[-1] > -60.0  # silence trimmed at both ends
    active = levels[levels > levels.max() - 30.0]
    active_rms = 10.0 * math.log10(float(np.mean(10.0 ** (active / 10.0))))
    assert -24.0 < active_rms < -17.0
    assert dbfs(float(np.abs(samples.astype(np.int32)).max())) > -6.0


def test_beep_is_200_ms_of_1_khz_at_minus_12_dbfs() -> None:
    beep = load_prompt(Prompt.BEEP)
    assert beep.size == 1600
    assert [round(f) for f in dominant_frequencies(beep, count=1)] == [1000]
    assert tone_levels(beep, [1000])[1000] == pytest.approx(-12.0, abs=0.3)
    assert beep[0] == 0 and abs(int(beep[-1])) < 50  # ramped: no click at either end


def test_warning_is_three_short_beeps() -> None:
    warning = load_prompt(Prompt.WARNING)
    runs = bursts(warning)
    assert len(runs) == 3
    for start, end in runs:
        assert 790 <= end - start <= 830  # 100 ms each
        assert [round(f) for f in dominant_frequencies(warning[start:end], count=1)] == [1000]


@pytest.mark.parametrize(
    ("name", "rising"),
    [
        (Prompt.JOIN, True),
        (Prompt.LEAVE, False),
        (Prompt.VOLUME_UP, True),
        (Prompt.VOLUME_DOWN, False),
    ],
)
def test_chimes_and_volume_beeps_rise_or_fall(name: Prompt, rising: bool) -> None:
    samples = load_prompt(name)
    half = samples.size // 2
    first = dominant_frequencies(samples[:half], count=1)[0]
    second = dominant_frequencies(samples[half:], count=1)[0]
    assert (second > first * 1.3) if rising else (first > second * 1.3)


# --- loading -----------------------------------------------------------------------------


def test_load_prompt_is_cached_and_read_only() -> None:
    first = load_prompt("muted")
    assert load_prompt(Prompt.MUTED) is first
    with pytest.raises(ValueError):
        first[0] = 1


def test_load_prompt_rejects_bad_names_and_missing_files() -> None:
    with pytest.raises(ValueError, match="bad prompt name"):
        load_prompt("../muted")
    with pytest.raises(FileNotFoundError, match="no_such_prompt"):
        load_prompt("no_such_prompt")


def _write(path: Path, rate: int, channels: int, width: int, frames: int = 80) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(b"\x01" * frames * channels * width)


@pytest.mark.parametrize(
    ("rate", "channels", "width", "detail"),
    [(16000, 1, 2, "16000 Hz"), (8000, 2, 2, "2 channel"), (8000, 1, 1, "8-bit")],
)
@pytest.mark.usefixtures("fresh_cache")
def test_load_prompt_names_the_file_in_the_wrong_format(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    rate: int,
    channels: int,
    width: int,
    detail: str,
) -> None:
    monkeypatch.setattr(prompt, "PROMPT_DIR", tmp_path)
    _write(tmp_path / "odd.wav", rate, channels, width)
    with pytest.raises(ValueError, match=rf"odd\.wav: need 8000 Hz mono 16-bit.*{detail}"):
        load_prompt("odd")


@pytest.mark.usefixtures("fresh_cache")
def test_load_prompt_reads_a_good_file_and_rejects_a_non_wav(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prompt, "PROMPT_DIR", tmp_path)
    _write(tmp_path / "ok.wav", 8000, 1, 2, frames=3)
    assert load_prompt("ok").tolist() == [257, 257, 257]
    assert available_prompts() == ["ok"]
    (tmp_path / "junk.wav").write_bytes(b"not a wav file at all")
    with pytest.raises(ValueError, match=r"junk\.wav: not a PCM WAV"):
        read_wav(tmp_path / "junk.wav")


# --- the player --------------------------------------------------------------------------


def ramp(count: int, start: int = 1) -> np.ndarray:
    return np.arange(start, start + count, dtype=np.int16)


def test_player_frames_pad_queue_order_replace_flag_and_finished_names() -> None:
    player = PromptPlayer()
    assert not player.busy and player.next_frame() is None and player.take_finished() == []
    player.play(ramp(400), label="first")
    player.play(ramp(160, start=1000), replace_room_audio=True, label="second")
    player.play(ramp(1, start=-5))
    assert player.busy

    expected = [
        (ramp(160).tolist(), False, []),
        (ramp(160, start=161).tolist(), False, []),
        (ramp(80, start=321).tolist() + [0] * 80, False, ["first"]),
        (ramp(160, start=1000).tolist(), True, ["second"]),
        ([-5] + [0] * 159, False, ["samples"]),
    ]
    for samples, replace, finished in expected:
        result = player.next_frame()
        assert result is not None
        frame, flag = result
        assert frame.dtype == np.int16 and frame.tolist() == samples
        assert flag is replace
        assert player.take_finished() == finished
    assert not player.busy and player.next_frame() is None


def test_player_plays_packaged_prompts_by_name_whole_and_in_order() -> None:
    player = PromptPlayer()
    player.play(Prompt.BEEP, replace_room_audio=True)
    player.play("join")
    frames = []
    while (result := player.next_frame()) is not None:
        frames.append(result)
    beep, join = load_prompt("beep"), load_prompt("join")
    beep_frames, join_frames = math.ceil(beep.size / 160), math.ceil(join.size / 160)
    assert len(frames) == beep_frames + join_frames
    assert [flag for _, flag in frames] == [True] * beep_frames + [False] * join_frames
    heard = np.concatenate([frame for frame, _ in frames])
    assert heard[: beep.size].tolist() == beep.tolist()
    assert heard[beep_frames * 160 : beep_frames * 160 + join.size].tolist() == join.tolist()
    assert player.take_finished() == ["beep", "join"]


def test_player_frames_cannot_corrupt_the_shared_cache() -> None:
    player = PromptPlayer()
    player.play("muted")
    result = player.next_frame()
    assert result is not None
    with pytest.raises(ValueError):
        result[0][0] = 123


def test_player_frame_size_can_change_and_empty_prompts_finish_without_a_frame() -> None:
    player = PromptPlayer()
    player.play(ramp(0), label="empty")
    player.play(ramp(10), label="short")
    first = player.next_frame(4)
    assert first is not None and first[0].tolist() == [1, 2, 3, 4]
    assert player.take_finished() == ["empty"]
    second = player.next_frame(8)
    assert second is not None and second[0].tolist() == [5, 6, 7, 8, 9, 10, 0, 0]
    assert player.take_finished() == ["short"]
    with pytest.raises(ValueError):
        player.next_frame(0)


def test_player_clear_drops_everything_without_reporting_it_finished() -> None:
    player = PromptPlayer()
    player.play(ramp(200), label="a")
    player.play(ramp(200), label="b")
    assert player.next_frame() is not None
    assert player.clear() == ["a", "b"]
    assert not player.busy and player.next_frame() is None
    assert player.take_finished() == []


def test_player_rejects_bad_input_at_play_time() -> None:
    player = PromptPlayer()
    with pytest.raises(FileNotFoundError):
        player.play("no_such_prompt")
    with pytest.raises(ValueError, match="1-D int16"):
        player.play(np.zeros(160, dtype=np.float32))
    with pytest.raises(ValueError, match="1-D int16"):
        player.play(np.zeros((2, 160), dtype=np.int16))
    assert not player.busy


def test_overlay_replaces_or_mixes_over_ducked_room_audio() -> None:
    room = np.array([1000, -1000, 30000, -30000], dtype=np.int16)
    tone = np.array([10, 20, 30000, -30000], dtype=np.int16)
    assert overlay(room, tone, replace=True).tolist() == tone.tolist()
    assert overlay(room, tone, replace=False).tolist() == [510, -480, 32767, -32768]
    assert overlay(room, tone, replace=False, duck=1.0).tolist()[:2] == [1010, -980]


# --- the generating script ---------------------------------------------------------------


def test_script_regenerates_tones_byte_for_byte(tmp_path: Path) -> None:
    written = make_prompts.generate(TONES, tmp_path)
    assert [path.name for path in written] == [f"{name}.wav" for name in TONES]
    for path in written:
        assert path.read_bytes() == (PROMPT_DIR / path.name).read_bytes(), path.name


def test_script_rejects_unknown_names_and_names_missing_tools(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SystemExit, match=r"unknown prompt.*nope"):
        make_prompts.generate(["nope"], tmp_path)
    monkeypatch.setattr(make_prompts.shutil, "which", lambda tool: None)
    with pytest.raises(SystemExit, match=r"missing tool.*espeak-ng, sox"):
        make_prompts.generate(["muted"], tmp_path)
    make_prompts.generate(["beep"], tmp_path)  # tones need no tools
    assert (tmp_path / "beep.wav").is_file()


def test_script_regenerates_a_speech_prompt_with_espeak_ng_and_sox(tmp_path: Path) -> None:
    missing = make_prompts.missing_tools()
    if missing:
        pytest.fail(
            f"speech prompts need {', '.join(missing)} on PATH: apt-get install espeak-ng sox"
        )
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path), "--only", "muted", "join"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["join.wav", "muted.wav"]
    fresh, shipped = read_wav(tmp_path / "muted.wav"), load_prompt("muted")
    assert fresh.size == pytest.approx(shipped.size, rel=0.3)
    assert rms_dbfs(fresh) == pytest.approx(rms_dbfs(shipped), abs=3.0)
    assert band_share(fresh, 300, 3400) > 0.75
