"""Generate the bridge's audio prompts as 8 kHz mono 16-bit WAV files.

Speech is made here, at build time, with espeak-ng and sox (Debian: `apt-get install espeak-ng
sox`), so the bridge needs no TTS at run time; tones are synthesised with numpy. The files land
in bridge/media/prompts/ and are committed. Run again after changing the table:

    .venv/bin/python scripts/make_prompts.py                 # all prompts, into the package
    .venv/bin/python scripts/make_prompts.py --only muted    # one prompt
    .venv/bin/python scripts/make_prompts.py --out /tmp/p    # somewhere else

Levels (dBFS relative to 32768): speech is scaled so its active 20 ms frames have an RMS of
-20 dBFS unless that would push a peak above -3 dBFS; tones are built at fixed levels.
"""

from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import sys
import tempfile
import wave
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from bridge.media.tones import sine

RATE = 8000
PACKAGE_DIR = Path(__file__).resolve().parent.parent / "bridge" / "media" / "prompts"
VOICE = "en-us"
WORDS_PER_MINUTE = 150
PEAK_DBFS = -3.0
SPEECH_RMS_DBFS = -20.0
TONE_DBFS = -12.0
CHIME_DBFS = -9.0
SPEECH_TOOLS = ("espeak-ng", "sox")

Recipe = Callable[[], np.ndarray]


def _amplitude(dbfs: float) -> float:
    return 32768.0 * 10.0 ** (dbfs / 20.0)


def _envelope(size: int, ramp_s: float = 0.005) -> np.ndarray:
    """Raised-cosine fade in and out, so a sound starts and stops without a click."""
    count = min(round(ramp_s * RATE), size // 2)
    envelope = np.ones(size)
    if count:
        rise = 0.5 - 0.5 * np.cos(np.pi * np.arange(count) / count)
        envelope[:count] = rise
        envelope[-count:] = rise[::-1]
    return envelope


def _ramped(tone: np.ndarray) -> np.ndarray:
    return np.rint(tone * _envelope(tone.size)).astype(np.int16)


def _beeps(freqs: Sequence[float], on_s: float, gap_s: float, dbfs: float) -> np.ndarray:
    """Short beeps one after another with silent gaps between them (none after the last)."""
    gap = np.zeros(round(gap_s * RATE), dtype=np.int16)
    parts: list[np.ndarray] = []
    for index, freq in enumerate(freqs):
        if index:
            parts.append(gap)
        parts.append(_ramped(sine(freq, on_s, amplitude=_amplitude(dbfs))))
    return np.concatenate(parts)


def _chime(freqs: Sequence[float], step_s: float = 0.15, ring_s: float = 0.35) -> np.ndarray:
    """Bell-like notes `step_s` apart, each decaying over `ring_s`: a gentle, short chime."""
    note_len = round(ring_s * RATE)
    total = np.zeros(round(step_s * RATE) * (len(freqs) - 1) + note_len)
    decay = np.exp(-np.arange(note_len) / (0.25 * ring_s * RATE))
    for index, freq in enumerate(freqs):
        note = _ramped(sine(freq, ring_s, amplitude=_amplitude(CHIME_DBFS))) * decay
        start = round(step_s * RATE) * index
        total[start : start + note_len] += note
    return np.rint(total).astype(np.int16)


PROMPTS: dict[str, str | Recipe] = {
    "enter_code": "Please enter the conference code, followed by the pound key.",
    "wrong_code": "That code is not valid. Please try again.",
    "too_many_attempts": "Too many wrong attempts. Goodbye.",
    "not_allowed": "You are not allowed to join this conference. Goodbye.",
    "muted": "You are muted.",
    "unmuted": "You are no longer muted.",
    "only_participant": "You are the only participant in this conference.",
    "joining": "You are joining the conference.",
    "goodbye": "Goodbye.",
    "press_pound_to_join": "You are invited to a conference. Press the pound key to join.",
    "conference_ending": "The conference will end in one minute.",
    "conference_locked": "This conference is locked.",
    "leave_message": "Please leave your message after the tone. Press pound when you are done.",
    "call_back_later": "This conference has not started yet. Please call back later. Goodbye.",
    "volume_up": lambda: _beeps([660.0, 990.0], 0.08, 0.04, TONE_DBFS),
    "volume_down": lambda: _beeps([990.0, 660.0], 0.08, 0.04, TONE_DBFS),
    "join": lambda: _chime([523.25, 783.99]),
    "leave": lambda: _chime([783.99, 523.25]),
    "beep": lambda: _ramped(sine(1000.0, 0.2, amplitude=_amplitude(TONE_DBFS))),
    "warning": lambda: _beeps([1000.0] * 3, 0.1, 0.1, TONE_DBFS),
}
"""Every prompt: text to speak, or a recipe that returns int16 samples at 8 kHz."""


def missing_tools() -> list[str]:
    """The speech tools not found on PATH."""
    return [tool for tool in SPEECH_TOOLS if shutil.which(tool) is None]


def _run(command: list[str]) -> bytes:
    result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode != 0:
        error = result.stderr.decode(errors="replace").strip()
        raise RuntimeError(f"{command[0]} failed ({result.returncode}): {error}")
    return result.stdout


def speak(text: str) -> np.ndarray:
    """Text to float samples at 8 kHz in [-1, 1]: espeak-ng, then sox to resample and trim."""
    with tempfile.TemporaryDirectory() as tmp:
        voiced = Path(tmp) / "voiced.wav"
        _run(["espeak-ng", "-v", VOICE, "-s", str(WORDS_PER_MINUTE), "-w", str(voiced), text])
        # Float output keeps sox from clipping or dithering; the int16 step is ours.
        raw = _run(
            [
                *("sox", str(voiced), "-t", "raw", "-e", "floating-point", "-b", "32"),
                *("-c", "1", "-r", str(RATE), "-"),
                *("highpass", "100", "rate", "-v", str(RATE), "gain", "-n"),
                *("silence", "1", "0.01", "-45d", "reverse", "silence", "1", "0.01", "-45d"),
                "reverse",
            ]
        )
    samples = np.frombuffer(raw, dtype="<f4").astype(np.float64)
    return samples * _envelope(samples.size)


def level_speech(samples: np.ndarray) -> np.ndarray:
    """Scale speech to SPEECH_RMS_DBFS over its active frames, peaks capped at PEAK_DBFS."""
    frames = samples[: samples.size // 160 * 160].reshape(-1, 160)
    frame_rms = np.sqrt(np.mean(frames**2, axis=1)) if frames.size else np.zeros(1)
    if frame_rms.max() <= 0.0:
        raise ValueError("speech is silent")
    active = frame_rms[frame_rms > frame_rms.max() * 10.0 ** (-30.0 / 20.0)]
    active_rms = math.sqrt(float(np.mean(active**2)))
    gain = min(
        10.0 ** (SPEECH_RMS_DBFS / 20.0) / active_rms,
        10.0 ** (PEAK_DBFS / 20.0) / float(np.abs(samples).max()),
    )
    return np.clip(np.rint(samples * gain * 32768.0), -32768, 32767).astype(np.int16)


def write_wav(path: Path, samples: np.ndarray) -> None:
    """Write int16 samples as an 8 kHz mono 16-bit WAV (byte-for-byte reproducible)."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(samples.astype("<i2").tobytes())


def render(name: str) -> np.ndarray:
    """The int16 samples of one prompt from the table."""
    recipe = PROMPTS[name]
    if isinstance(recipe, str):
        return level_speech(speak(recipe))
    return recipe()


def generate(names: Sequence[str], out_dir: Path) -> list[Path]:
    """Render `names` into `out_dir`/<name>.wav; raise SystemExit naming missing tools."""
    unknown = sorted(set(names) - set(PROMPTS))
    if unknown:
        raise SystemExit(f"unknown prompt(s): {', '.join(unknown)}; known: {', '.join(PROMPTS)}")
    if any(isinstance(PROMPTS[name], str) for name in names) and (missing := missing_tools()):
        raise SystemExit(
            f"missing tool(s) for speech prompts: {', '.join(missing)} "
            "(Debian: apt-get install espeak-ng sox)"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        path = out_dir / f"{name}.wav"
        write_wav(path, render(name))
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=PACKAGE_DIR, help="output directory")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="generate only these prompts")
    args = parser.parse_args(argv)
    for path in generate(args.only or list(PROMPTS), args.out):
        with wave.open(str(path), "rb") as wav:
            seconds = wav.getnframes() / RATE
        print(f"{path}  {seconds:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
