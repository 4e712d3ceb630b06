"""Packaged audio prompts and a per-participant prompt player.

The prompts are 8 kHz mono 16-bit WAV files made at build time by scripts/make_prompts.py, so
the bridge needs no TTS at run time. A prompt is played to one participant only: the player is
sans-I/O and only hands out frames, which the room either mixes over that participant's mix
or sends instead of it (see `overlay`).
"""

from __future__ import annotations

import re
import wave
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path

import numpy as np

from bridge.media.resample import RATES, Resampler

RATE = 8000
FRAME_SAMPLES = 160
ANNOUNCEMENT_RATE = 48000
"""Uploaded announcements are stored at this rate (the packaged prompts are 8 kHz)."""
ANNOUNCEMENT_RATES = RATES
PROMPT_DIR = Path(__file__).resolve().parent / "prompts"
_NAME = re.compile(r"[a-z0-9_]+")


class Prompt(StrEnum):
    """Every prompt the bridge plays; each has a file PROMPT_DIR/<value>.wav."""

    ENTER_CODE = "enter_code"
    WRONG_CODE = "wrong_code"
    TOO_MANY_ATTEMPTS = "too_many_attempts"
    NOT_ALLOWED = "not_allowed"
    MUTED = "muted"
    UNMUTED = "unmuted"
    ONLY_PARTICIPANT = "only_participant"
    JOINING = "joining"
    GOODBYE = "goodbye"
    PRESS_POUND_TO_JOIN = "press_pound_to_join"
    CONFERENCE_ENDING = "conference_ending"
    CONFERENCE_LOCKED = "conference_locked"
    CALL_BACK_LATER = "call_back_later"
    LEAVE_MESSAGE = "leave_message"
    VOLUME_UP = "volume_up"
    VOLUME_DOWN = "volume_down"
    JOIN = "join"
    LEAVE = "leave"
    BEEP = "beep"
    WARNING = "warning"


def read_wav(path: Path) -> np.ndarray:
    """An 8 kHz mono 16-bit WAV file as int16 samples; ValueError naming the file otherwise."""
    return read_wav_at(path, (RATE,))[0]


def read_wav_at(path: Path, rates: tuple[int, ...]) -> tuple[np.ndarray, int]:
    """A mono 16-bit WAV file at one of `rates`: its int16 samples and rate; ValueError naming
    the file otherwise."""
    try:
        with wave.open(str(path), "rb") as wav:
            shape = (wav.getframerate(), wav.getnchannels(), wav.getsampwidth())
            data = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"{path}: not a PCM WAV file ({exc})") from exc
    rate, channels, width = shape
    if rate not in rates or (channels, width) != (1, 2):
        raise ValueError(
            f"{path}: need {' or '.join(map(str, rates))} Hz mono 16-bit, got {rate} Hz, "
            f"{channels} channel(s), {8 * width}-bit"
        )
    return np.frombuffer(data, dtype="<i2").astype(np.int16), rate


def load_prompt(name: str) -> np.ndarray:
    """The packaged prompt `name` as read-only int16 samples at 8 kHz, read once and cached.

    Read-only because every participant's player shares the cached array.
    """
    return _load_cached(str(name))  # one cache entry whether given "muted" or Prompt.MUTED


@cache
def _load_cached(name: str) -> np.ndarray:
    if not _NAME.fullmatch(name):
        raise ValueError(f"bad prompt name {name!r}: use lowercase letters, digits and '_'")
    path = PROMPT_DIR / f"{name}.wav"
    if not path.is_file():
        raise FileNotFoundError(f"no prompt {name!r} ({path}); available: {available_prompts()}")
    samples = read_wav(path)
    samples.setflags(write=False)
    return samples


def load_file(path: str) -> dict[int, np.ndarray]:
    """An uploaded announcement (a mono WAV the control plane wrote, 48 kHz; 8 kHz before)
    at each mixing rate up to its own (8 kHz always), read-only, read once per version of the
    file: a wideband room plays it at the room's rate, a G.711 room at 8 kHz."""
    file = Path(path)
    try:
        version = file.stat().st_mtime_ns
    except OSError as exc:
        raise FileNotFoundError(f"no announcement file {path} ({exc.strerror})") from None
    return _load_file_cached(str(file), version)


@cache
def _load_file_cached(path: str, version: int) -> dict[int, np.ndarray]:
    samples, rate = read_wav_at(Path(path), ANNOUNCEMENT_RATES)
    padded = np.concatenate([samples, np.zeros(-samples.size % (rate // 50), np.int16)])
    copies = {rate: padded}
    for lower in ANNOUNCEMENT_RATES:
        if lower < rate:
            copies[lower] = Resampler(rate, lower).process(padded)
    for copy in copies.values():
        copy.setflags(write=False)
    return copies


def available_prompts() -> list[str]:
    """Names of the packaged prompts, sorted."""
    return sorted(path.stem for path in PROMPT_DIR.glob("*.wav"))


@dataclass
class _Queued:
    name: str
    copies: dict[int, np.ndarray]  # the prompt at each rate it is held at (8 kHz always)
    replace_room_audio: bool
    position: int = 0  # in 8 kHz samples


class PromptPlayer:
    """Queued prompts for one participant, handed out one frame at a time.

    Each prompt starts on a fresh frame and its last frame is zero-padded, so every frame
    belongs to exactly one prompt and carries that prompt's replace flag.
    """

    def __init__(self) -> None:
        self._queue: deque[_Queued] = deque()
        self._finished: list[str] = []

    @property
    def busy(self) -> bool:
        """True while a prompt is queued or playing."""
        return bool(self._queue)

    def play(
        self,
        name_or_samples: str | np.ndarray,
        *,
        replace_room_audio: bool = False,
        label: str | None = None,
    ) -> None:
        """Queue a packaged prompt by name, an uploaded announcement by its absolute path, or
        int16 samples at 8 kHz, after any queued ones.

        `label` names raw samples in `take_finished` (default "samples"); a named prompt is
        reported by its name. Unknown names fail here, not halfway through a call.
        """
        if isinstance(name_or_samples, str) and name_or_samples.startswith("/"):
            name = name_or_samples  # an announcement
            self._queue.append(_Queued(name, load_file(name), replace_room_audio))
            return
        if isinstance(name_or_samples, str):
            name, samples = str(name_or_samples), load_prompt(name_or_samples)
        else:
            samples = np.asarray(name_or_samples)
            if samples.ndim != 1 or samples.dtype != np.int16:
                raise ValueError(
                    f"prompt samples must be 1-D int16, got {samples.ndim}-D {samples.dtype}"
                )
            name = label or "samples"
        self._queue.append(_Queued(name, {RATE: samples}, replace_room_audio))

    def clear(self) -> list[str]:
        """Stop the current prompt and drop the queued ones; returns their names.

        Cleared prompts are not reported by `take_finished`: they did not finish.
        """
        dropped = [item.name for item in self._queue]
        self._queue.clear()
        return dropped

    def next_frame(
        self, frame_samples: int = FRAME_SAMPLES, rate: int = RATE
    ) -> tuple[np.ndarray, bool] | None:
        """The next frame (`frame_samples` at 8 kHz) and whether it replaces the room audio
        (else mixed over it). At `rate` when the prompt is held at that rate (an uploaded
        announcement in a wideband room: the frame is then `rate / 8000` times as long), else
        at 8 kHz: the caller tells by its size.

        None when idle. Full frames are read-only views into the prompt; the last frame of a
        prompt is a new zero-padded array.
        """
        if frame_samples < 1:
            raise ValueError("frame_samples must be at least 1")
        while self._queue:
            item = self._queue[0]
            at = rate if rate in item.copies else RATE
            samples, scale = item.copies[at], at // RATE
            start = item.position * scale
            end = start + frame_samples * scale
            if start >= samples.size:  # an empty prompt: finished without a frame
                self._finish()
                continue
            if end < samples.size:
                item.position += frame_samples
                return samples[start:end], item.replace_room_audio
            frame = np.zeros(end - start, dtype=np.int16)
            frame[: samples.size - start] = samples[start:]
            self._finish()
            return frame, item.replace_room_audio
        return None

    def take_finished(self) -> list[str]:
        """Names of the prompts whose last frame was handed out since the previous call."""
        finished, self._finished = self._finished, []
        return finished

    def _finish(self) -> None:
        self._finished.append(self._queue.popleft().name)


def overlay(
    room: np.ndarray, prompt: np.ndarray, *, replace: bool, duck: float = 0.5
) -> np.ndarray:
    """What the participant hears: the prompt alone, or over the room audio scaled by `duck`.

    Ducking the room (default -6 dB) keeps the prompt intelligible over a lively room.
    """
    if replace:
        return prompt.astype(np.int16, copy=True)
    mixed = np.rint(room.astype(np.float32) * duck) + prompt.astype(np.float32)
    return np.clip(mixed, -32768, 32767).astype(np.int16)
