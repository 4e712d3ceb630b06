"""Wires the bridge together: sockets, the SIP core, the conference service and the mixer clock.

The one place that knows every part. Everything here is glue: move bytes into the sans-I/O cores,
send what they return, re-arm one timer, and run the 20 ms mixer on absolute monotonic deadlines.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import resource
from collections.abc import Callable

import structlog

from bridge.conference.service import ConferenceService
from bridge.config import Config
from bridge.net.mixer_clock import LatenessHistogram, MixerClock
from bridge.net.rtp_port import RtpPortPool
from bridge.net.sip_transport import SipTransports
from bridge.sip.timers import TimerConfig
from bridge.sip.transaction import Peer
from bridge.sip.useragent import UserAgent
from bridge.workers.pool import WorkerPool

log = structlog.get_logger()

WATCHDOG_SECONDS = 1.0


class BridgeServer:
    """A running bridge. `await BridgeServer(config).start()`, then `await server.stop()`."""

    def __init__(self, config: Config) -> None:
        self.config = config
        sip = config.sip
        self.transports = SipTransports(self._on_sip_message, sip.max_message_bytes)
        self.ua: UserAgent | None = None
        self.service: ConferenceService | None = None
        self.clock = MixerClock()
        self.workers: WorkerPool | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline: float | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.lateness = LatenessHistogram()  # of this process' ticks, when it mixes the rooms

    async def start(self) -> BridgeServer:
        self.loop = asyncio.get_running_loop()
        sip, rtp = self.config.sip, self.config.rtp
        await self.transports.start(sip.bind, sip.udp_port, sip.tcp_port)
        timers = TimerConfig(t1=sip.t1_ms / 1000, t2=sip.t2_ms / 1000, t4=sip.t4_ms / 1000)
        self.ua = UserAgent(
            host=self.config.advertise_address,
            udp_port=self.transports.udp_port,
            tcp_port=self.transports.tcp_port,
            timers=timers,
            user_agent=sip.user_agent,
            max_message_bytes=sip.max_message_bytes,
        )
        if self.config.media.worker_count:
            log_config = self.config.log
            self.workers = WorkerPool(
                self.config.media.worker_count,
                self._on_worker_death,
                log_config.level,
                log_config.format,
            )
            await self.workers.start()
        self.service = ConferenceService(
            self.config,
            self.ua,
            RtpPortPool(rtp.port_min, rtp.port_max),
            schedule=self._schedule,
            workers=self.workers,
        )
        self._tasks = [
            asyncio.create_task(self.clock.run(self._tick)),
            asyncio.create_task(self._watchdog()),
        ]
        log.info(
            "bridge.started",
            sip_udp=self.transports.udp_port,
            sip_tcp=self.transports.tcp_port,
            advertise=self.config.advertise_address,
            rtp_ports=f"{rtp.port_min}-{rtp.port_max}",
            media_workers=self.config.media.worker_count,
        )
        return self

    async def stop(self) -> None:
        """Hang up every call (BYE), give the BYEs a moment on the wire, close the sockets."""
        if self.service is not None:
            for room in self.service.rooms.values():
                if room.name not in self.service.room_workers:  # else its worker timed it
                    log.info("room.tick_stats", room=room.name, **dataclasses.asdict(room.stats))
        if self.service is not None and self.loop is not None:
            self.service.hangup_all(self.loop.time(), "shutdown")
            self._flush(self.loop.time())
            await asyncio.sleep(0.05)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._timer is not None:
            self._timer.cancel()
        if self.workers is not None:
            await self.workers.stop()
        self.transports.close()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        log.info(
            "bridge.stopped",
            ticks=self.clock.ticks,
            skipped_ticks=self.clock.skipped,
            cpu_user_s=round(usage.ru_utime, 3),
            cpu_system_s=round(usage.ru_stime, 3),
        )

    # --- SIP glue ---------------------------------------------------------------------------

    def _on_sip_message(self, data: bytes, peer: Peer) -> None:
        assert self.ua is not None and self.loop is not None
        now = self.loop.time()
        self.ua.receive_data(data, peer, now)
        self._flush(now)

    def _schedule(self, delay: float, action: Callable[[float], None]) -> None:
        assert self.loop is not None
        loop = self.loop

        def run() -> None:
            now = loop.time()
            action(now)
            self._flush(now)

        loop.call_later(delay, run)

    def _on_timer(self) -> None:
        assert self.ua is not None and self.loop is not None
        self._timer = None
        self._timer_deadline = None
        now = self.loop.time()
        self.ua.handle_timer(now)
        self._flush(now)

    def _flush(self, now: float) -> None:
        """Let the service act on UA events, send what the SIP core produced, re-arm its timer."""
        ua, service = self.ua, self.service
        assert ua is not None and service is not None and self.loop is not None
        while (event := ua.next_event()) is not None:
            service.handle(event, now)
        for out in ua.datagrams_to_send():
            self.transports.send(out)
        deadline = ua.get_timer()
        if deadline != self._timer_deadline:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._timer_deadline = deadline
            if deadline is not None:
                self._timer = self.loop.call_at(deadline, self._on_timer)

    # --- media clock ------------------------------------------------------------------------

    def _tick(self, now: float, deadline: float) -> None:
        """Tick the rooms mixed here (all of them without workers) and take the workers'
        reports; tick lateness counts here only when this process mixes."""
        assert self.service is not None
        if self.workers is None:
            self.lateness.observe(now - deadline)
        self.service.tick(now, deadline)
        self._flush(now)

    def _on_worker_death(self, worker: int) -> None:
        if self.service is None or self.loop is None:
            return  # died while starting: nothing to hang up
        now = self.loop.time()
        self.service.worker_died(worker, now)
        self._flush(now)

    async def _watchdog(self) -> None:
        assert self.loop is not None and self.service is not None
        while True:
            await asyncio.sleep(WATCHDOG_SECONDS)
            now = self.loop.time()
            self.service.check_rtp_timeouts(now)
            if self.workers is not None:
                self.workers.check_alive(now)
            self._flush(now)
