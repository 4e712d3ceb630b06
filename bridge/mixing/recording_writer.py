"""The thread that writes a room's recording to disk through PyAV, so the tick never waits on
the disk: the tick hands frames over a bounded queue (`offer` never blocks; a full queue drops
the frame and counts it) and the thread encodes and muxes them.

A write error (the disk is full, the directory went away) ends the recording with that reason;
the room and its calls carry on. What is muxed reaches the file as it goes, so a recording cut
short (its worker process killed) keeps what was written until then.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, TypeVar

import av
import numpy as np
from av.audio.frame import AudioFrame

T = TypeVar("T")
RATE = 48000
QUEUE_FRAMES = 500  # 10 s of 20 ms frames waiting for a slow disk
FORMATS = {"wav": ("wav", "pcm_s16le"), "ogg": ("ogg", "libopus")}
OPTIONS = {"wav": {}, "ogg": {"page_duration": "200000"}}
"""Ogg pages of 200 ms (the muxer's default, 1 s, keeps more back from the file)."""


class _File:
    """The file PyAV writes through; keeps the error a write or seek raised, which PyAV
    turns into an "Error in PyAV callback" of its own."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.error: OSError | None = None

    def write(self, data: bytes) -> int | None:
        return self._call(self.raw.write, data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._call(self.raw.seek, offset, whence)

    def tell(self) -> int:
        return self.raw.tell()

    def _call(self, method: Callable[..., T], *args: int | bytes) -> T:
        try:
            return method(*args)
        except OSError as exc:
            self.error = exc
            raise


class RecordingWriter:
    def __init__(self, path: Path, fmt: str) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"recording format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        self.path, self.format = path, fmt
        self.dropped = 0
        self.error: str | None = None
        self.done = threading.Event()
        self._queue: queue.Queue[np.ndarray | None] = queue.Queue(QUEUE_FRAMES)
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=f"recording {path.name}",
                                        daemon=True)
        self._thread.start()

    def offer(self, samples: np.ndarray) -> None:
        """Queue one 48 kHz int16 frame; never blocks."""
        if self._closing:
            return
        try:
            self._queue.put_nowait(samples)
        except queue.Full:
            self.dropped += 1

    def close(self) -> None:
        """Finish the file once the queued frames are written (returns at once)."""
        if not self._closing:
            self._closing = True
            self._queue.put(None)  # the thread drains the queue: room for the end mark soon

    def _run(self) -> None:
        container_format, codec = FORMATS[self.format]
        file: _File | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)  # a keypad start made no folder
            # through a file of ours: PyAV writes as it muxes (opened by path, FFmpeg kept the
            # whole recording back until the end, so a killed worker left an empty file)
            with open(self.path, "wb", buffering=0) as raw, av.open(
                file := _File(raw), "w", format=container_format, options=OPTIONS[self.format]
            ) as container:
                stream = container.add_stream(codec, rate=RATE, layout="mono")
                pts = 0
                while (samples := self._queue.get()) is not None:
                    frame = AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16",
                                                    layout="mono")
                    frame.sample_rate, frame.pts = RATE, pts
                    pts += samples.size
                    container.mux(stream.encode(frame))
                container.mux(stream.encode(None))
        except (OSError, av.FFmpegError) as exc:
            failed = file.error if file is not None else None
            self.error = str(failed or exc)  # PyAV reports the file's own error as its callback's
            self._closing = True
        finally:
            self.done.set()
