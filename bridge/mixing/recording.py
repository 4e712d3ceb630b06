"""A room's recording as the engine holds it: the mix every member who is not talking hears
(the room's total), resampled to 48 kHz and handed to a writer thread each tick.

The engine ends it on `StopRecording`, when the room closes, or when the writer fails (disk
full): each way it becomes one `RecordingEnded` report with the file's duration and size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bridge.media.resample import Resampler
from bridge.mixing.recording_writer import RATE, RecordingWriter

STOPPED = "stopped"
ROOM_CLOSED = "room_closed"


@dataclass(eq=False)
class RoomRecording:
    path: Path
    format: str
    writer: RecordingWriter = field(init=False)
    frames: int = 0
    reason: str | None = None  # set once asked to end
    _resampler: Resampler | None = None

    def __post_init__(self) -> None:
        self.writer = RecordingWriter(self.path, self.format)

    def push(self, total: np.ndarray, rate: int) -> None:
        """This tick's total at the room's `rate`."""
        if self.reason is not None:
            return
        resampler = self._resampler
        if resampler is None or resampler.from_rate != rate:
            resampler = self._resampler = Resampler(rate, RATE)
        frame = resampler.process(total)
        self.writer.offer(frame.copy() if frame is total else frame)
        self.frames += 1

    def end(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
            self.writer.close()

    @property
    def finished(self) -> bool:
        """The file is complete (or the writer gave up): time to report."""
        return self.writer.done.is_set()

    @property
    def outcome(self) -> str:
        error = self.writer.error
        return f"error: {error}" if error else (self.reason or STOPPED)

    @property
    def duration_s(self) -> float:
        return round(self.frames * 0.02, 2)

    @property
    def size_bytes(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0
