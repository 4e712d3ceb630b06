"""Recording a conference's mix: start, stop, list and fetch the files.

The bridge writes the file off its tick; here we only choose the file's name, make sure the
directory takes it (an unwritable place is refused at once, naming the problem, instead of a
recording that silently never exists) and find finished files for download.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

from control.plane import ControlPlane
from control.store.records import Conference
from control.usecases.conferences import require_open
from control.usecases.errors import Conflict, Invalid, NotFound, Unavailable

FORMATS = ("wav", "ogg")
_FILE = re.compile(r"^(?P<room>[A-Za-z0-9._-]{1,32})-\d{8}T\d{6}Z(-\d+)?\.(wav|ogg)$")


@dataclass(frozen=True)
class RecordingFile:
    file: str
    size_bytes: int
    recording: bool  # still being written


def directory(plane: ControlPlane) -> Path:
    return Path(plane.config.recording.dir).resolve()


def _new_file(plane: ControlPlane, room: str, fmt: str) -> Path:
    """Create the recording's (empty) file: proof the directory takes it."""
    folder = directory(plane)
    stamp = plane.clock().astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, 100):
            suffix = "" if attempt == 1 else f"-{attempt}"
            path = folder / f"{room}-{stamp}{suffix}.{fmt}"
            try:
                path.open("xb").close()
                return path
            except FileExistsError:
                continue
    except OSError as exc:
        raise Unavailable(f"recording directory {folder}: {exc.strerror or exc}") from None
    raise Conflict(f"too many recordings of {room!r} this second")


def start(plane: ControlPlane, conference: Conference, fmt: str | None = None) -> RecordingFile:
    require_open(conference)
    fmt = fmt or plane.config.recording.format
    if fmt not in FORMATS:
        raise Invalid("format", f"must be one of {', '.join(FORMATS)}, got {fmt!r}")
    room = conference.name
    if plane.bridge.recording(room) is not None:
        raise Conflict(f"conference {room!r} is recording already")
    path = _new_file(plane, room, fmt)
    if not plane.bridge.start_recording(room, str(path), fmt):
        path.unlink(missing_ok=True)
        raise Conflict(f"conference {room!r} has nobody in it to record")
    return RecordingFile(path.name, 0, True)


def stop(plane: ControlPlane, conference: Conference) -> None:
    if not plane.bridge.stop_recording(conference.name):
        raise Conflict(f"conference {conference.name!r} is not recording")


def listing(plane: ControlPlane, conference: Conference) -> list[RecordingFile]:
    folder = directory(plane)
    active = plane.bridge.recording(conference.name)
    files = []
    for path in sorted(folder.glob(f"{conference.name}-*")) if folder.is_dir() else []:
        match = _FILE.match(path.name)
        if match is None or match["room"] != conference.name:
            continue
        files.append(RecordingFile(path.name, path.stat().st_size, str(path) == active))
    return files


def file(plane: ControlPlane, conference: Conference, name: str) -> Path:
    """A finished or running recording of this conference, by file name."""
    match = _FILE.match(name)
    path = directory(plane) / name
    if match is None or match["room"] != conference.name or not path.is_file():
        raise NotFound(f"recording {name!r}")
    return path
