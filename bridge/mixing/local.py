"""The in-process media backend: every room is mixed by this process' 20 ms clock, and each
leg's RTP socket is read here. What a 1-core machine runs, and what `media.workers = 0` asks.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from bridge.config import RtpConfig
from bridge.mixing.backend import (
    RTP_TIMEOUT,
    AddParticipant,
    MediaCommand,
    MediaReport,
    MediaStats,
    MediaTotals,
    ParticipantLost,
    RemoveParticipant,
)
from bridge.mixing.engine import MediaEngine, media_stats, new_participant
from bridge.mixing.vector.tick import VectorTick
from bridge.net.mixer_clock import LatenessHistogram
from bridge.net.rtp_port import PortRangeExhausted, RtpPortPool, RtpSocket


class LegSockets:
    """Each leg's RTP socket, bound when its SDP needs a port and read from then on; packets
    before its media starts are dropped, as a phone's early RTP would be."""

    def __init__(self, rtp: RtpConfig) -> None:
        self.ports = RtpPortPool(rtp.port_min, rtp.port_max)
        self.sockets: dict[str, RtpSocket] = {}
        self._opening: set[asyncio.Task[None]] = set()

    def reserve(self, leg: str, host: str, engine: MediaEngine) -> int | None:
        try:
            rtp = RtpSocket(self.ports.bind(host), self.ports)
        except PortRangeExhausted:
            return None
        self.sockets[leg] = rtp
        loop = asyncio.get_running_loop()
        members, now = engine.members, loop.time

        def on_packet(data: bytes, source: tuple[str, int]) -> None:
            participant = members.get(leg)
            if participant is not None:
                engine.receive(participant, data, source, now())

        opening = loop.create_task(rtp.open(on_packet))
        self._opening.add(opening)
        opening.add_done_callback(self._opening.discard)
        return rtp.port

    def close(self, leg: str) -> None:
        rtp = self.sockets.pop(leg, None)
        if rtp is not None:
            rtp.close()

    def close_all(self) -> None:
        for leg in list(self.sockets):
            self.close(leg)


class LocalMedia:
    """`MediaBackend` mixing in this process."""

    def __init__(self, rtp: RtpConfig, vector: bool = True) -> None:
        self.rtp = rtp
        self.engine = MediaEngine(vector=VectorTick() if vector else None)
        self.sockets = LegSockets(rtp)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.engine.log_tick_stats()
        self.sockets.close_all()

    def reserve(self, leg: str, host: str, room: str | None = None) -> int | None:
        return self.sockets.reserve(leg, host, self.engine)  # in-process: a socket per call

    def apply(self, command: MediaCommand) -> None:
        if isinstance(command, AddParticipant):
            rtp = self.sockets.sockets.get(command.leg)
            if rtp is None:
                return  # its call ended meanwhile
            participant = new_participant(
                command, rtp.send, self.rtp.jitter_target_ms, self.rtp.jitter_max_ms
            )
            self.engine.add(participant, command.room)
            return
        self.engine.apply(command)
        if isinstance(command, RemoveParticipant):
            self.sockets.close(command.leg)

    def tick(self, now: float, deadline: float) -> None:
        self.engine.tick(now, deadline)

    def check(self, now: float, rtp_timeout_s: float) -> None:
        for leg in self.engine.silent_since(rtp_timeout_s, lambda _leg: now):
            self.engine.reports.append(ParticipantLost(leg, RTP_TIMEOUT))

    def take_reports(self) -> list[MediaReport]:
        return self.engine.take_reports()

    def stats(self, leg: str) -> MediaStats | None:
        return self.engine.stats(leg)

    def totals(self) -> MediaTotals:
        return totals_of(self.engine, self.engine.lateness)


def totals_of(engine: MediaEngine, lateness: LatenessHistogram) -> MediaTotals:
    """The engine's ended legs plus its legs up now."""
    sums = replace(engine.ended)
    for participant in engine.members.values():
        sums.add(media_stats(participant))
    return MediaTotals(
        sums.packets_in, sums.packets_out, sums.lost, tuple(lateness.counts), lateness.total_s,
        srtp_rejected=sums.srtp_rejected, frames_concealed=sums.concealed,
        frames_trimmed=sums.trimmed,
    )  # fmt: skip
