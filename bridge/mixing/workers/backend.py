"""The media backend over worker processes.

A leg's socket is bound here and, until it joins a room, its media lives in this process'
lobby (code entry, "press # to join"). When it joins, the room is placed on the least-loaded
worker (if not there already, it stays there while it has people) and the leg is handed over
with its socket; from then on its commands are forwarded, and its reports come back. Counters
are mirrored from the worker's once-a-second report, so RTP timeouts are judged against the
time of that report, never against now.

With a shared RTP port (`rtp.shared_port`), each worker reads and writes all its shared-port
calls on one socket (bound here, in the RTP range, and passed to it at start). A leg whose room
is known when its SDP is built (dial-in by room name, dial-out, API calls) has the room placed
on a worker there and then, and its SDP names that worker's port: its media never lives here,
even while it waits in a lobby ("press # to join" lives in the worker's own lobby). A leg whose
room is not known yet (the code-entry IVR) keeps its own socket, handed over as before.
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
from bridge.mixing.engine import EndedTotals, media_stats, new_participant
from bridge.mixing.local import LocalMedia
from bridge.mixing.workers.handoff import pack
from bridge.mixing.workers.pool import WorkerHandle, WorkerPool
from bridge.mixing.workers.protocol import (
    HandOver,
    ParticipantRemoved,
    StatsTable,
    WorkerReady,
    WorkerStats,
)

log = structlog.get_logger()

ROOM_ON_OTHER_WORKER = "room_on_other_worker"


@dataclass
class Placed:
    """A leg mixed by a worker, as this process last heard of it."""

    worker: int
    room: str
    on_hold: bool
    first_stats: MediaStats  # as handed over, until its worker reports
    last_rtp: float
    known_at: float = float("-inf")  # time of the worker report the figures come from
    shared: bool = False  # on the worker's shared RTP port
    table: StatsTable | None = None  # the worker's last report, and this leg's row of it
    row: int = 0

    @property
    def stats(self) -> MediaStats:
        if self.table is None:
            return self.first_stats
        return self.table.row(self.row).media


class WorkerMedia:
    """`MediaBackend` over `count` media worker processes."""

    def __init__(
        self,
        rtp: RtpConfig,
        count: int,
        log_level: str = "info",
        log_format: str = "console",
        vector: bool = True,
        shared_host: str | None = None,
        fill_workers: int = 0,
    ) -> None:
        # the lobby, and every socket until it is handed over
        self.local = LocalMedia(rtp, vector)
        self.rtp = rtp
        self.shared_host = shared_host  # bind each worker a shared RTP port on this host
        self.shared_ports: list[int] = []
        self.shared_reserved: dict[str, tuple[int, str]] = {}  # leg -> (worker, room), not added
        self.pool = WorkerPool(count, self._on_death, log_level, log_format, vector)
        self.fill_workers = fill_workers  # 0: spread new rooms; N: fill a worker to N first
        self.room_workers: dict[str, int] = {}  # rooms on a worker, while they have people
        self.room_legs: dict[str, set[str]] = {}
        self.placed: dict[str, Placed] = {}
        self.mixing: dict[str, bool] = {}
        self.recordings: dict[str, tuple[int, str]] = {}  # room -> (worker, path) while on
        self.ended = EndedTotals()  # of legs removed from workers
        self.reports: list[MediaReport] = []
        self.on_lost: Callable[[], None] = lambda: None  # the glue takes reports at once

    async def start(self) -> None:
        if self.shared_host is not None:
            ports = self.local.sockets.ports
            self.pool.shared = [ports.bind(self.shared_host) for _ in range(self.pool.count)]
            self.shared_ports = [sock.getsockname()[1] for sock in self.pool.shared]
            log.info("rtp.shared_ports", ports=self.shared_ports)
        await self.pool.start()

    async def stop(self) -> None:
        await self.local.stop()
        await self.pool.stop()
        for sock in self.pool.shared:
            self.local.sockets.ports.release(sock.getsockname()[1])
            sock.close()

    def reserve(self, leg: str, host: str, room: str | None = None) -> int | None:
        """A port for the leg's SDP: its room's worker's shared port when the room is known
        (the room is placed now and stays while this leg is reserved), else its own."""
        if room is None or not self.shared_ports:
            return self.local.reserve(leg, host)
        worker = self._place(room)
        self.pool.workers[worker].participants += 1  # counts for placing the next rooms
        self.shared_reserved[leg] = (worker, room)
        self.room_legs.setdefault(room, set()).add(leg)
        return self.shared_ports[worker]

    def _place(self, room: str) -> int:
        worker = self.room_workers.get(room)
        if worker is None:
            worker = self.room_workers[room] = self.pool.for_new_room(self.fill_workers)
            log.info("room.placed", room=room, worker=worker)
        return worker

    # --- commands ---------------------------------------------------------------------------

    def apply(self, command: MediaCommand) -> None:
        if isinstance(command, AddParticipant):
            if command.leg in self.shared_reserved:
                self._hand_over_shared(command)
                return
            self.local.apply(replace(command, room=None))
            if command.room is not None:
                self._hand_over(command.leg, command.room)
        elif isinstance(command, MoveParticipant):
            if command.leg in self.local.engine.members:
                self._hand_over(command.leg, command.room)
            elif self._shared(command.leg):
                self._move_shared(command)
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
        worker = self._place(room)
        participant.room = room
        mixing = self.mixing.get(room, True)
        handover = HandOver(room, mixing, pack(participant), sequence)
        self.pool.add(worker, handover, rtp.sock.fileno())
        rtp.detach()
        self.placed[leg] = Placed(
            worker, room, participant.on_hold, media_stats(participant), participant.last_rtp
        )
        self.room_legs.setdefault(room, set()).add(leg)

    def _hand_over_shared(self, command: AddParticipant) -> None:
        """A shared-port leg's media starts on its room's worker (in that worker's lobby when
        `command.room` is None: "press # to join", or a full room's apology)."""
        worker, room = self.shared_reserved.pop(command.leg)
        self.pool.removed(worker)  # counted again by `add`
        if command.room is not None and command.room != room:  # its plan changed (voice mail)
            on = self.room_workers.get(command.room)
            self._unpin(command.leg, room)
            if on is not None and on != worker:
                self._lose(command.leg, command.room, on)
                return
            room = command.room
            self.room_workers[room] = worker
            self.room_legs.setdefault(room, set()).add(command.leg)
        rtp = self.rtp
        participant = new_participant(  # (`pack` gives it the travelling send function)
            command, lambda data, address: None, rtp.jitter_target_ms, rtp.jitter_max_ms
        )
        mixing = self.mixing.get(room, True)
        self.pool.add(worker, HandOver(command.room, mixing, pack(participant), None, True), None)
        self.placed[command.leg] = Placed(
            worker, room, participant.on_hold,
            MediaStats(participant.counters, 0, 0.0), participant.last_rtp, shared=True,
        )  # fmt: skip

    def _shared(self, leg: str) -> bool:
        placed = self.placed.get(leg)
        return placed is not None and placed.shared

    def _move_shared(self, command: MoveParticipant) -> None:
        """A shared-port leg cannot leave its worker (its port is the worker's): the room
        comes to it, unless the room is already mixed on another worker (a REFER to a room
        there), when the call is lost rather than split from the room's audio."""
        placed = self.placed[command.leg]
        on = self.room_workers.get(command.room)
        if on is not None and on != placed.worker:
            self._lose(command.leg, command.room, on)
            return
        self.room_workers[command.room] = placed.worker
        if command.room != placed.room:
            self._unpin(command.leg, placed.room)
            placed.room = command.room
            self.room_legs.setdefault(command.room, set()).add(command.leg)
        self.pool.send(placed.worker, command)

    def _lose(self, leg: str, room: str, on: int) -> None:
        log.error("room.on_other_worker", leg=leg, room=room, worker=on)
        self.reports.append(ParticipantLost(leg, ROOM_ON_OTHER_WORKER))
        self.on_lost()

    def _unpin(self, leg: str, room: str) -> None:
        legs = self.room_legs.get(room, set())
        legs.discard(leg)
        if not legs:
            self.room_legs.pop(room, None)
            self.room_workers.pop(room, None)

    def _remove(self, command: RemoveParticipant) -> None:
        reserved = self.shared_reserved.pop(command.leg, None)
        if reserved is not None:  # its media never started
            self.pool.removed(reserved[0])
            self._unpin(command.leg, reserved[1])
            return
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
        self._unpin(leg, placed.room)
        return placed

    # --- reports ----------------------------------------------------------------------------

    def tick(self, now: float, deadline: float) -> None:
        """Tick the lobby here (the workers tick their rooms) and take the workers' reports."""
        self.local.tick(now, deadline)
        for report in self.pool.take_inbox():
            if isinstance(report, WorkerStats):
                self._mirror(report.participants_stats, report.at)
            elif isinstance(report, ParticipantRemoved):
                self.ended.add(report.stats.media)
            elif isinstance(report, RecordingEnded):
                self.recordings.pop(report.room, None)
                self.reports.append(report)
            elif not isinstance(report, WorkerReady) and report.leg in self.placed:
                self.reports.append(report)

    def _mirror(self, table: StatsTable, at: float) -> None:
        """The legs' figures as of `at`: each keeps its row of the table, no objects made."""
        placed_by_leg = self.placed
        last_rtp = table.last_rtp.tolist()
        for row, leg in enumerate(table.call_keys):
            placed = placed_by_leg.get(leg)
            if placed is not None:
                placed.table, placed.row = table, row
                placed.last_rtp, placed.known_at = last_rtp[row], at

    def check(self, now: float, rtp_timeout_s: float) -> None:
        self.local.check(now, rtp_timeout_s)
        for leg, placed in self.placed.items():
            if not placed.on_hold and placed.known_at - placed.last_rtp > rtp_timeout_s:
                self.reports.append(ParticipantLost(leg, "rtp_timeout"))
        self.pool.check_alive(now)

    def _on_death(self, worker: int) -> None:
        """Every leg the dead worker carried is lost; the glue hangs them up at once."""
        legs = [leg for leg, placed in self.placed.items() if placed.worker == worker]
        legs += [leg for leg, (on, _room) in self.shared_reserved.items() if on == worker]
        for leg in legs:
            self._unplace(leg)
            reserved = self.shared_reserved.pop(leg, None)
            if reserved is not None:
                self._unpin(leg, reserved[1])
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
        sums = replace(self.ended)
        for placed in self.placed.values():
            sums.add(placed.stats)
        lateness = self.pool.lateness
        return MediaTotals(
            local.packets_in + sums.packets_in,
            local.packets_out + sums.packets_out,
            local.packets_lost + sums.lost,
            tuple(lateness.counts),
            lateness.total_s,
            sum(w.last_stats.unmatched for w in self.pool.workers if w.last_stats),
            local.srtp_rejected + sums.srtp_rejected,
            local.frames_concealed + sums.concealed,
            local.frames_trimmed + sums.trimmed,
        )

    @property
    def workers(self) -> list[WorkerHandle]:
        return self.pool.workers

    def rooms_on(self, worker: int) -> int:
        return sum(1 for placed_on in self.room_workers.values() if placed_on == worker)
