"""A media worker process: `python -m bridge.mixing.workers.process FD INDEX`.

Its own uvloop event loop runs the 20 ms clock over its rooms (`MediaEngine`), reads the main
process' commands from the socket pair at FD, receives and sends its participants' RTP on the
sockets handed over with them, and sends reports back. When the main process goes away (the
pair reads end-of-file) the worker exits: it never outlives the bridge.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
import time

import structlog
import uvloop

from bridge.logs import configure_logging
from bridge.mixing.backend import RemoveParticipant, UpdateMedia
from bridge.mixing.engine import MediaEngine
from bridge.mixing.participant import Participant
from bridge.mixing.vector.tick import VectorTick
from bridge.mixing.workers.handoff import unpack
from bridge.mixing.workers.protocol import (
    HandOver,
    ParticipantRemoved,
    ParticipantStats,
    Report,
    StatsTable,
    WorkerReady,
    WorkerStats,
    decode,
    encode,
    receive,
)
from bridge.mixing.workers.shared_port import SharedRtpPort
from bridge.net.mixer_clock import TICK_SECONDS, LatenessHistogram, MixerClock
from bridge.net.rtp_port import RtpSocket

log = structlog.get_logger()

STATS_EVERY_TICKS = 50  # one WorkerStats a second


def stats_of(participant: Participant) -> ParticipantStats:
    jitter = participant.jitter
    return ParticipantStats(
        participant.call_key,
        participant.counters,
        participant.loss.lost,
        jitter.jitter_ms,
        participant.last_rtp,
        jitter.concealed,
        jitter.trimmed,
    )


class Worker:
    def __init__(
        self,
        channel: socket.socket,
        index: int,
        vector: bool = True,
        shared: socket.socket | None = None,
    ) -> None:
        self.channel = channel
        self.index = index
        self.engine = MediaEngine(vector=VectorTick() if vector else None)
        self.sockets: dict[str, RtpSocket] = {}
        self.shared = SharedRtpPort(shared) if shared is not None else None
        self.reports: list[Report] = []  # removals, sent with the next tick's
        self.clock = MixerClock()
        self.done = asyncio.Event()
        self._opening: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.channel.setblocking(False)
        loop.add_reader(self.channel.fileno(), self._on_commands)
        ticking = asyncio.create_task(self.clock.run(self._tick))
        with contextlib.suppress(OSError):  # main already gone: the reader sees end-of-file
            self.channel.send(encode([WorkerReady(os.getpid())]))
        log.info("worker.started", worker=self.index)
        await self.done.wait()
        ticking.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticking
        loop.remove_reader(self.channel.fileno())
        for rtp in self.sockets.values():
            rtp.close()
        if self.shared is not None:
            self.shared.close()
        log.info("worker.stopped", worker=self.index, ticks=self.clock.ticks)

    def _on_commands(self) -> None:
        while True:
            try:
                message = receive(self.channel)
            except BlockingIOError:
                return
            if message is None:
                self.done.set()  # the main process is gone
                asyncio.get_running_loop().remove_reader(self.channel.fileno())
                return
            data, fds = message
            for command in decode(data):
                if isinstance(command, HandOver):
                    if command.shared:
                        self._add_shared(command)
                    else:
                        self._add(command, fds.pop(0))
                    continue
                if self.shared is not None and isinstance(command, RemoveParticipant):
                    self.shared.remove(command.leg)  # first: it leaves with its counts
                removed = self.engine.apply(command)
                if self.shared is not None:
                    self._shared_follows(command)
                if removed is not None:
                    self.reports.append(ParticipantRemoved(stats_of(removed)))
                    rtp = self.sockets.pop(removed.call_key, None)
                    if rtp is not None:
                        rtp.close()

    def _take(self, command: HandOver) -> Participant:
        participant = unpack(command.state)
        if command.room is not None:
            self.engine.mixing[command.room] = command.mixing
            if command.room in self.engine.rooms:
                self.engine.rooms[command.room].mixing = command.mixing
        self.engine.add(participant, command.room)
        if command.sequence is not None:
            self.engine.prompt_sequence[participant.call_key] = command.sequence
        return participant

    def _add_shared(self, command: HandOver) -> None:
        participant = self._take(command)
        if self.shared is None:  # the main process thinks we have one: never mixes it
            log.error("worker.no_shared_port", worker=self.index, leg=participant.call_key)
            return
        self.shared.add(participant, asyncio.get_running_loop().time())

    def _shared_follows(self, command: object) -> None:
        """The shared port's demultiplexer follows its members' SDP addresses."""
        assert self.shared is not None
        if isinstance(command, UpdateMedia) and command.leg in self.shared.members:
            self.shared.update(self.shared.members[command.leg])

    def _add(self, command: HandOver, fd: int) -> None:
        rtp = RtpSocket(socket.socket(fileno=fd), pool=None)
        participant = self._take(command)
        participant.send = rtp.send
        self.sockets[participant.call_key] = rtp
        loop = asyncio.get_running_loop()
        receive, now = self.engine.receive, loop.time
        opening = loop.create_task(
            rtp.open(lambda data, source: receive(participant, data, source, now()))
        )
        self._opening.add(opening)
        opening.add_done_callback(self._opening.discard)

    def _tick(self, now: float, deadline: float) -> None:
        engine, shared = self.engine, self.shared
        if shared is not None:
            # commands after each read and before its datagrams are routed: the loop runs a
            # due timer before it polls the channel, and a call's first RTP, sent on our
            # 200 OK, must not find its worker not knowing it yet (the main process writes
            # the hand-over before it sends the 200 OK; read first, the RTP could come in
            # between)
            # (woken late, this and the next ticks run back to back before the next read)
            ticks_due = 1 + int((now - deadline) / TICK_SECONDS)
            shared.receive(now, self._on_commands, ticks_due)
        engine.tick(now, deadline)
        if shared is not None:
            shared.flush()
        reports: list[Report] = [*self.reports, *engine.take_reports()]
        self.reports = []
        if engine.ticks % STATS_EVERY_TICKS == 0:
            if shared is not None:
                shared.senders.settle()  # the tick's array sends into packets_out
                shared.fold()  # and its array receives into packets_in
            reports.append(
                WorkerStats(
                    at=now,
                    rooms=len(engine.rooms),
                    participants=len(engine.members),
                    lateness=engine.lateness,
                    cpu_seconds=time.process_time(),
                    participants_stats=StatsTable.of(map(stats_of, engine.members.values())),
                    unmatched=shared.unmatched if shared is not None else 0,
                )
            )
            engine.lateness = LatenessHistogram()
        if reports:
            with contextlib.suppress(BlockingIOError, OSError):
                self.channel.send(encode(reports))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="confbridge-media-worker")
    parser.add_argument("fd", type=int, help="this worker's end of the socket pair")
    parser.add_argument("index", type=int)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--log-format", default="console")
    parser.add_argument("--reference-tick", action="store_true", help="tick room by room")
    parser.add_argument("--shared-rtp-fd", type=int, help="the worker's shared RTP socket")
    args = parser.parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the main process to handle
    channel = socket.socket(fileno=args.fd)
    shared = socket.socket(fileno=args.shared_rtp_fd) if args.shared_rtp_fd is not None else None
    uvloop.run(Worker(channel, args.index, vector=not args.reference_tick, shared=shared).run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
