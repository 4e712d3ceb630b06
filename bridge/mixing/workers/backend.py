"""The media backend over worker processes.

A leg's socket is bound here and, until it joins a room, its media lives in this process'
lobby (code entry, "press # to join"). When it joins, the room is placed on the least-loaded
worker (if not there already, it stays there while it has people) and the leg is handed over
with its socket; from then on its commands are forwarded, and its reports come back. Counters
are mirrored from the worker's once-a-second report, so RTP timeouts are judged against the
time of that report, never against now.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace

import structlog

from bridge.config import RtpConfig
from bridge.mixing.backend import (
    WORKER_DIED,
    AddParticipant,
    MediaCommand,
    MediaReport,
    MediaStats,
    MediaTotals,
    MoveParticipant,
    ParticipantLost,
    RecordingEnded,
    RemoveParticipant,
    SetRoomMixing,
    StartRecording,
    StopRecording,
    UpdateMedia,
)
from bridge.mixing.engine import EndedTotals
from bridge.mixing.local import LocalMedia
from bridge.mixing.workers.handoff import pack
from bridge.mixing.workers.pool import WorkerHandle, WorkerPool
from bridge.mixing.workers.protocol import (
    HandOver,
    ParticipantRemoved,
    ParticipantStats,
    WorkerReady,
    WorkerStats,
)

log = structlog.get_logger()


@dataclass
class Placed:
    """A leg mixed by a worker, as this process last heard of it."""

    worker: int
    room: str
    on_hold: bool
    stats: MediaStats
    last_rtp: float
    known_at: float = float("-inf")  # time of the worker report the figures come from


class WorkerMedia:
    """`MediaBackend` over `count` media worker processes."""

    def __init__(
        self,
        rtp: RtpConfig,
        count: int,
        log_level: str = "info",
        log_format: str = "console",
        vector: bool = True,
    ) -> None:
        # the lobby, and every socket until it is handed over
        self.local = LocalMedia(rtp, vector)
        self.pool = WorkerPool(count, self._on_death, log_level, log_format, vector)
        self.room_workers: dict[str, int] = {}  # rooms on a worker, while they have people
        self.room_legs: dict[str, set[str]] = {}
        self.placed: dict[str, Placed] = {}
        self.mixing: dict[str, bool] = {}
        self.recordings: dict[str, tuple[int, str]] = {}  # room -> (worker, path) while on
        self.ended = EndedTotals()  # of legs removed from workers
        self.reports: list[MediaReport] = []
        self.on_lost: Callable[[], None] = lambda: None  # the glue takes reports at once

    async def start(self) -> None:
        await self.pool.start()

    async def stop(self) -> None:
        await self.local.stop()
        await self.pool.stop()

    def reserve(self, leg: str, host: str) -> int | None:
        return self.local.reserve(leg, host)

    # --- commands ---------------------------------------------------------------------------

    def apply(self, command: MediaCommand) -> None:
        if isinstance(command, AddParticipant):
            self.local.apply(replace(command, room=None))
            if command.room is not None:
                self._hand_over(command.leg, command.room)
        elif isinstance(command, MoveParticipant):
            if command.leg in self.local.engine.members:
                self._hand_over(command.leg, command.room)
        elif isinstance(command, SetRoomMixing):
            self.mixing[command.room] = command.mixing
            worker = self.room_workers.get(command.room)
            if worker is not None:
                self.pool.send(worker, command)
        elif isinstance(command, StartRecording | StopRecording):
            worker = self.room_workers.get(command.room)
            if worker is None:  # no member handed over yet: the lobby's engine answers
                self.local.apply(command)
                return
            if isinstance(command, StartRecording):
                self.recordings[command.room] = (worker, command.path)
            self.pool.send(worker, command)
        elif isinstance(command, RemoveParticipant):
            self._remove(command)
        else:
            placed = self.placed.get(command.leg)
            if placed is None:
                self.local.apply(command)
                return
            if isinstance(command, UpdateMedia):
                placed.on_hold = command.media.on_hold
            self.pool.send(placed.worker, command)

    def _hand_over(self, leg: str, room: str) -> None:
        engine = self.local.engine
        sequence = engine.prompt_sequence.get(leg)
        participant = engine.remove(leg)
        rtp = self.local.sockets.sockets.get(leg)
        if participant is None or rtp is None:
            return
        worker = self.room_workers.get(room)
        if worker is None:
            worker = self.room_workers[room] = self.pool.least_loaded()
            log.info("room.placed", room=room, worker=worker)
        participant.room = room
        mixing = self.mixing.get(room, True)
        handover = HandOver(room, mixing, pack(participant), sequence)
        self.pool.add(worker, handover, rtp.sock.fileno())
        rtp.detach()
        jitter = participant.jitter.stats
        self.placed[leg] = Placed(
            worker,
            room,
            participant.on_hold,
            MediaStats(participant.counters, participant.loss.lost, jitter.jitter_ms),
            participant.last_rtp,
        )
        self.room_legs.setdefault(room, set()).add(leg)

    def _remove(self, command: RemoveParticipant) -> None:
        placed = self._unplace(command.leg)
        if placed is None:
            self.local.apply(command)
            return
        self.pool.send(placed.worker, command)  # its final counters come back
        self.pool.removed(placed.worker)
        self.local.sockets.close(command.leg)  # our copy of the socket: frees the port

    def _unplace(self, leg: str) -> Placed | None:
        placed = self.placed.pop(leg, None)
        if placed is None:
            return None
        legs = self.room_legs.get(placed.room, set())
        legs.discard(leg)
        if not legs:
            self.room_legs.pop(placed.room, None)
            self.room_workers.pop(placed.room, None)
        return placed

    # --- reports ----------------------------------------------------------------------------

    def tick(self, now: float, deadline: float) -> None:
        """Tick the lobby here (the workers tick their rooms) and take the workers' reports."""
        self.local.tick(now, deadline)
        for report in self.pool.take_inbox():
            if isinstance(report, WorkerStats):
                for stats in report.participants_stats:
                    self._mirror(stats, report.at)
            elif isinstance(report, ParticipantRemoved):
                self.ended.add(report.stats.counters, report.stats.lost)
            elif isinstance(report, RecordingEnded):
                self.recordings.pop(report.room, None)
                self.reports.append(report)
            elif not isinstance(report, WorkerReady) and report.leg in self.placed:
                self.reports.append(report)

    def _mirror(self, stats: ParticipantStats, at: float) -> None:
        placed = self.placed.get(stats.call_key)
        if placed is not None:
            placed.stats = MediaStats(stats.counters, stats.lost, stats.jitter_ms)
            placed.last_rtp, placed.known_at = stats.last_rtp, at

    def check(self, now: float, rtp_timeout_s: float) -> None:
        self.local.check(now, rtp_timeout_s)
        for leg, placed in self.placed.items():
            if not placed.on_hold and placed.known_at - placed.last_rtp > rtp_timeout_s:
                self.reports.append(ParticipantLost(leg, "rtp_timeout"))
        self.pool.check_alive(now)

    def _on_death(self, worker: int) -> None:
        """Every leg the dead worker carried is lost; the glue hangs them up at once."""
        legs = [leg for leg, placed in self.placed.items() if placed.worker == worker]
        for leg in legs:
            self._unplace(leg)
            self.local.sockets.close(leg)
            self.reports.append(ParticipantLost(leg, WORKER_DIED))
        for room, (on, path) in list(self.recordings.items()):
            if on == worker:  # its writer thread died with it: the file ends where it was
                del self.recordings[room]
                size = os.path.getsize(path) if os.path.exists(path) else 0
                self.reports.append(RecordingEnded(room, path, 0.0, size, WORKER_DIED))
        log.error("worker.calls_lost", worker=worker, calls=len(legs))
        self.on_lost()

    def take_reports(self) -> list[MediaReport]:
        reports = [*self.local.take_reports(), *self.reports]
        self.reports = []
        return reports

    # --- questions --------------------------------------------------------------------------

    def stats(self, leg: str) -> MediaStats | None:
        placed = self.placed.get(leg)
        return placed.stats if placed is not None else self.local.stats(leg)

    def totals(self) -> MediaTotals:
        local = self.local.totals()
        ended = self.ended
        packets_in, packets_out, lost = ended.packets_in, ended.packets_out, ended.lost
        for placed in self.placed.values():
            packets_in += placed.stats.counters.packets_in
            packets_out += placed.stats.counters.packets_out
            lost += placed.stats.lost
        lateness = self.pool.lateness
        return MediaTotals(
            local.packets_in + packets_in,
            local.packets_out + packets_out,
            local.packets_lost + lost,
            tuple(lateness.counts),
            lateness.total_s,
        )

    @property
    def workers(self) -> list[WorkerHandle]:
        return self.pool.workers

    def rooms_on(self, worker: int) -> int:
        return sum(1 for placed_on in self.room_workers.values() if placed_on == worker)
