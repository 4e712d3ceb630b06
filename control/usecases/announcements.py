"""Announcements: audio files a tenant uploads (WAV, Ogg, MP3, anything PyAV reads), kept as
48 kHz mono WAV, and played with the packaged prompts to a whole conference or to one
participant, at the room's rate (a G.711 room hears them at 8 kHz, a G.722 one at 16 kHz, an
Opus one at 48 kHz).

Decoding happens here, once, at upload: a file that is not audio, has no audio stream or runs
too long is refused naming the problem, and the bridge only ever reads a WAV it can play.
"""

from __future__ import annotations

import io
import re
import wave
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from av.audio.resampler import AudioResampler

from bridge.media.prompt import ANNOUNCEMENT_RATE as RATE
from bridge.media.prompt import available_prompts
from control.plane import ControlPlane
from control.store.records import Conference, Tenant
from control.usecases.conferences import require_open
from control.usecases.errors import Invalid, NotFound

NAME = re.compile(r"^[a-z0-9_-]{1,32}$")


@dataclass(frozen=True)
class Announcement:
    name: str
    seconds: float


def directory(plane: ControlPlane, tenant: Tenant) -> Path:
    return Path(plane.config.announcements.dir).resolve() / tenant.id


def check_name(name: str) -> None:
    if not NAME.match(name):
        raise Invalid("name", f"use 1-32 of a-z, 0-9, '_' and '-', got {name!r}")


def decode(data: bytes, max_seconds: int) -> np.ndarray:
    """Any audio PyAV reads, as 48 kHz mono int16 samples (CPU-bound: run it off the loop)."""
    limit = max_seconds * RATE
    chunks: list[np.ndarray] = []
    count = 0
    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.audio:
                raise Invalid("body", "not an audio file: no audio stream in it")
            resampler = AudioResampler(format="s16", layout="mono", rate=RATE)
            for frame in container.decode(container.streams.audio[0]):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
                    count += chunks[-1].size
                if count > limit:
                    raise Invalid("body", f"audio longer than {max_seconds} s")
            chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    except av.FFmpegError as exc:
        raise Invalid("body", f"not an audio file PyAV can read ({exc.strerror or exc})") from None
    samples = np.concatenate(chunks).astype(np.int16) if chunks else np.zeros(0, np.int16)
    if samples.size == 0:
        raise Invalid("body", "the upload holds no audio")
    return samples


def store(plane: ControlPlane, tenant: Tenant, name: str, samples: np.ndarray) -> Announcement:
    folder = directory(plane, tenant)
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{name}.partial"
    with wave.open(str(partial), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(samples.astype("<i2").tobytes())
    partial.replace(folder / f"{name}.wav")
    return Announcement(name, round(samples.size / RATE, 2))


def listing(plane: ControlPlane, tenant: Tenant) -> list[Announcement]:
    folder = directory(plane, tenant)
    found = []
    for path in sorted(folder.glob("*.wav"), key=lambda p: p.stem) if folder.is_dir() else []:
        with wave.open(str(path)) as wav:  # 8 kHz for files stored before 48 kHz was
            found.append(Announcement(path.stem, round(wav.getnframes() / wav.getframerate(), 2)))
    return found


def path_of(plane: ControlPlane, tenant: Tenant, name: str) -> Path:
    check_name(name)
    path = directory(plane, tenant) / f"{name}.wav"
    if not path.is_file():
        raise NotFound(f"announcement {name!r}")
    return path


def delete(plane: ControlPlane, tenant: Tenant, name: str) -> None:
    path_of(plane, tenant, name).unlink()


def play(
    plane: ControlPlane,
    tenant: Tenant,
    conference: Conference,
    *,
    announcement: str | None = None,
    prompt: str | None = None,
    participant_id: str | None = None,
) -> None:
    """Play an uploaded announcement or a packaged prompt to the room or one participant."""
    require_open(conference)
    if (announcement is None) == (prompt is None):
        raise Invalid("announcement", "give exactly one of announcement and prompt")
    if prompt is not None and prompt not in available_prompts():
        known = ", ".join(available_prompts())
        raise Invalid("prompt", f"unknown prompt {prompt!r}; one of {known}")
    target = prompt if prompt is not None else str(path_of(plane, tenant, str(announcement)))
    if participant_id is None:
        plane.bridge.play_to_room(conference.name, target)
    elif not plane.bridge.play_to_participant(conference.name, participant_id, target):
        raise NotFound(f"participant {participant_id!r}")
