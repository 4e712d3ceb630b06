"""The main process' side of the media workers: start them, talk to them, notice them die.

A worker is a child process (`python -m bridge.mixing.workers.process`) joined to us by a
SOCK_SEQPACKET socket pair. Its death shows as end-of-file on that pair, at once, whatever
killed it; the pool then calls `on_death` (the bridge hangs up the calls that worker carried)
before it starts a new process in its place, so no new caller lands on the dead one's rooms.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from bridge.mixing.workers.protocol import (
    Command,
    HandOver,
    Report,
    WorkerReady,
    WorkerStats,
    decode,
    encode,
    receive,
    socket_pair,
)
from bridge.net.mixer_clock import LatenessHistogram

log = structlog.get_logger()

STOP_GRACE_SECONDS = 2.0
START_TIMEOUT_SECONDS = 30.0
RESPAWN_BACKOFF_SECONDS = 2.0
HUNG_SECONDS = 10.0  # 10 missed reports: not a busy worker (its clock skips ticks), a stuck one


def room_worker(loads: list[tuple[bool, int]], fill: int) -> int:
    """The worker (index into `loads`, each (running, participants)) a new room goes to: with
    `fill` > 0 the first running one with fewer than `fill` participants, so one worker fills
    before the next opens; otherwise, or when all are that full, the least loaded, running ones
    before those (re)starting."""
    if fill > 0:
        for index, (running, participants) in enumerate(loads):
            if running and participants < fill:
                return index
    return min(range(len(loads)), key=lambda i: (not loads[i][0], loads[i][1]))


@dataclass(eq=False)
class WorkerHandle:
    """One worker process as the main process sees it."""

    index: int
    process: subprocess.Popen[bytes]
    channel: socket.socket
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # its loop runs
    participants: int = 0  # placed by us and not yet removed
    restarts: int = 0
    started_at: float = 0.0  # the loop's clock
    heard_at: float = 0.0  # when it last sent anything (it reports at least once a second)
    cpu_earlier: float = 0.0  # CPU seconds of the previous processes in this slot
    last_stats: WorkerStats | None = None
    outgoing: deque[tuple[bytes, int | None]] = field(default_factory=deque)  # (message, fd)

    @property
    def cpu_seconds(self) -> float:
        reported = self.last_stats.cpu_seconds if self.last_stats else 0.0
        return self.cpu_earlier + reported


class WorkerPool:
    """`count` media workers. Their reports queue in `inbox` for the service to take on its
    next tick; a death is told at once through `on_death(worker)`."""

    def __init__(
        self,
        count: int,
        on_death: Callable[[int], None],
        log_level: str = "info",
        log_format: str = "console",
        vector: bool = True,
    ) -> None:
        self.count = count
        self.on_death = on_death
        self.log_level = log_level
        self.log_format = log_format
        self.vector = vector  # False: the workers tick room by room (the reference)
        self.shared: list[socket.socket] = []  # each worker's shared RTP socket, if any
        self.workers: list[WorkerHandle] = []
        self.inbox: list[Report] = []
        self.lateness = LatenessHistogram()  # every worker's ticks since start
        self.stopping = False
        self.loop: asyncio.AbstractEventLoop | None = None

    async def start(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        """Start every worker and wait until each runs: a participant handed to a worker
        still importing numpy would lose its first second of audio to the queue."""
        self.loop = asyncio.get_running_loop()
        self.workers = [self._spawn(index) for index in range(self.count)]
        await asyncio.wait_for(
            asyncio.gather(*(worker.ready.wait() for worker in self.workers)), timeout
        )

    def _spawn(self, index: int, restarts: int = 0, cpu_earlier: float = 0.0) -> WorkerHandle:
        assert self.loop is not None
        ours, theirs = socket_pair()
        shared = [self.shared[index].fileno()] if self.shared else []
        process = subprocess.Popen(
            [
                sys.executable, "-m", "bridge.mixing.workers.process",
                str(theirs.fileno()), str(index),
                "--log-level", self.log_level, "--log-format", self.log_format,
                *([] if self.vector else ["--reference-tick"]),
                *(arg for fd in shared for arg in ("--shared-rtp-fd", str(fd))),
            ],
            pass_fds=(theirs.fileno(), *shared),
        )
        theirs.close()
        ours.setblocking(False)
        handle = WorkerHandle(
            index,
            process,
            ours,
            restarts=restarts,
            started_at=self.loop.time(),
            cpu_earlier=cpu_earlier,
        )
        self.loop.add_reader(ours.fileno(), self._on_readable, handle)
        log.info("worker.spawned", worker=index, pid=process.pid, restarts=restarts)
        return handle

    # --- commands -------------------------------------------------------------------------

    def for_new_room(self, fill: int) -> int:
        """Where a new room goes: `room_worker` over the workers as they are now."""
        loads = [(w.ready.is_set(), w.participants) for w in self.workers]
        return room_worker(loads, fill)

    def add(self, worker: int, command: HandOver, fd: int | None) -> None:
        """Hand a participant and its RTP socket to `worker`; the caller may close `fd` after.
        `fd` None: the participant is on the worker's shared port."""
        handle = self.workers[worker]
        handle.participants += 1
        self._send(handle, encode([command]), None if fd is None else os.dup(fd))

    def removed(self, worker: int) -> None:
        handle = self.workers[worker]
        handle.participants = max(0, handle.participants - 1)

    def send(self, worker: int, command: Command) -> None:
        self._send(self.workers[worker], encode([command]), None)

    def _send(self, handle: WorkerHandle, message: bytes, fd: int | None) -> None:
        handle.outgoing.append((message, fd))
        if len(handle.outgoing) == 1:
            self._drain(handle)

    def _drain(self, handle: WorkerHandle) -> None:
        """Send what is queued; on a full socket buffer, wait until it is writable again."""
        assert self.loop is not None
        while handle.outgoing:
            message, fd = handle.outgoing[0]
            try:
                if fd is None:
                    handle.channel.send(message)
                else:
                    socket.send_fds(handle.channel, [message], [fd])
            except BlockingIOError:
                self.loop.add_writer(handle.channel.fileno(), self._on_writable, handle)
                return
            except OSError:  # the worker is gone: its reader sees end-of-file and restarts it
                self._discard_outgoing(handle)
                return
            handle.outgoing.popleft()
            if fd is not None:
                os.close(fd)

    def _on_writable(self, handle: WorkerHandle) -> None:
        assert self.loop is not None
        self.loop.remove_writer(handle.channel.fileno())
        self._drain(handle)

    # --- reports and deaths ---------------------------------------------------------------

    def _on_readable(self, handle: WorkerHandle) -> None:
        while True:
            try:
                message = receive(handle.channel)
            except BlockingIOError:
                return
            if message is None:
                self._died(handle)
                return
            data, fds = message
            handle.heard_at = self.loop.time()
            for fd in fds:
                os.close(fd)  # workers send none; never leak one
            for report in decode(data):
                if isinstance(report, WorkerReady):
                    handle.ready.set()
                    continue
                if isinstance(report, WorkerStats):
                    handle.last_stats = report
                    self.lateness.add(report.lateness)
                self.inbox.append(report)

    def check_alive(self, now: float) -> None:
        """Kill a running worker silent for HUNG_SECONDS (stuck or stopped): its end-of-file
        then hangs up its calls and restarts it, as for any other death."""
        for handle in self.workers:
            if handle.ready.is_set() and now - handle.heard_at > HUNG_SECONDS:
                log.error("worker.hung", worker=handle.index, pid=handle.process.pid)
                handle.ready.clear()
                handle.process.kill()

    def _died(self, handle: WorkerHandle) -> None:
        assert self.loop is not None
        handle.ready.clear()
        self._close(handle)
        code = handle.process.poll()
        if code is None:  # still exiting, or alive with its channel gone: useless either way
            handle.process.kill()
            self.loop.call_later(1.0, handle.process.poll)  # reap it
        if self.stopping:
            return
        log.error("worker.died", worker=handle.index, pid=handle.process.pid, exit_code=code)
        self.on_death(handle.index)
        # a worker that dies as it starts (a broken install?) is retried every few seconds,
        # not in a tight loop; meanwhile `room_worker` prefers the running ones
        lived = self.loop.time() - handle.started_at
        delay = RESPAWN_BACKOFF_SECONDS if lived < RESPAWN_BACKOFF_SECONDS else 0.0
        self.loop.call_later(delay, self._respawn, handle)

    def _respawn(self, dead: WorkerHandle) -> None:
        if not self.stopping and self.workers[dead.index] is dead:
            self.workers[dead.index] = self._spawn(
                dead.index, dead.restarts + 1, dead.cpu_seconds
            )

    def _close(self, handle: WorkerHandle) -> None:
        assert self.loop is not None
        self.loop.remove_reader(handle.channel.fileno())
        self.loop.remove_writer(handle.channel.fileno())
        self._discard_outgoing(handle)
        handle.channel.close()

    @staticmethod
    def _discard_outgoing(handle: WorkerHandle) -> None:
        """Drop what a dead worker will never read, closing the sockets' descriptors."""
        for _message, fd in handle.outgoing:
            if fd is not None:
                os.close(fd)
        handle.outgoing.clear()

    def take_inbox(self) -> list[Report]:
        inbox, self.inbox = self.inbox, []
        return inbox

    async def stop(self) -> None:
        """Close every pair (the workers exit on end-of-file), then make sure they are gone."""
        self.stopping = True
        for handle in self.workers:
            if handle.channel.fileno() != -1:
                self._close(handle)
        for handle in self.workers:
            try:
                await asyncio.to_thread(handle.process.wait, STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                handle.process.kill()
                await asyncio.to_thread(handle.process.wait)
