"""Wires the bridge together: sockets, the SIP core, the conference core, the media backend and
the mixer clock.

The one place that knows every part, and only glue: move bytes into the sans-I/O cores, carry
out what they return (SIP actions on the user agent, media commands on the backend, events on
the bus), feed media reports back, re-arm one timer, and run the 20 ms clock on absolute
monotonic deadlines.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
import time

import structlog
from sipmessage import URI, Address

from bridge.conference.actions import carry_out
from bridge.conference.core import ConferenceCore
from bridge.config import Config
from bridge.events import EventBus
from bridge.mixing.backend import MediaBackend
from bridge.mixing.local import LocalMedia
from bridge.mixing.workers.backend import WorkerMedia
from bridge.net.mixer_clock import MixerClock
from bridge.net.sip_transport import SipTransports
from bridge.net.tls import client_context, server_context
from bridge.server_control import ServerControl
from bridge.sip.auth import Credentials
from bridge.sip.flood import FloodGuard, FloodRules
from bridge.sip.registration import RegistrationConfig
from bridge.sip.session_timer import SessionTimerConfig
from bridge.sip.timers import TimerConfig
from bridge.sip.transaction import Outgoing, Peer
from bridge.sip.useragent import UserAgent

log = structlog.get_logger()

WATCHDOG_SECONDS = 1.0


def flood_rules(config: Config) -> FloodRules:
    security = config.security
    return FloodRules(
        security.new_dialogs_per_s,
        security.new_dialogs_burst,
        security.flood_action,
        security.retry_after_s,
        security.allow,
    )


class BridgeServer:
    """A running bridge. `await BridgeServer(config).start()`, then `await server.stop()`;
    the control plane drives it through `server.control`."""

    def __init__(self, config: Config) -> None:
        self.config = config
        sip = config.sip
        self.transports = SipTransports(self._on_sip_message, sip.max_message_bytes)
        self.transports.on_unreachable = self._on_unreachable
        self.events = EventBus()
        self.ua: UserAgent | None = None
        self.core: ConferenceCore | None = None
        self.media: MediaBackend | None = None
        self.clock = MixerClock()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline: float | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.flood = FloodGuard(flood_rules(config))
        self.control = ServerControl(self)

    async def start(self) -> BridgeServer:
        self.loop = asyncio.get_running_loop()
        sip, rtp = self.config.sip, self.config.rtp
        media: MediaBackend
        if self.config.media.worker_count:
            log_config = self.config.log
            media = WorkerMedia(
                rtp,
                self.config.media.worker_count,
                log_config.level,
                log_config.format,
                vector=self.config.media.tick == "vector",
                shared_host=sip.bind if rtp.shared_port and ":" not in sip.bind else None,
                fill_workers=self.config.media.fill_workers,
            )
            media.on_lost = self._on_media_lost
        else:
            media = LocalMedia(rtp, vector=self.config.media.tick == "vector")
        await media.start()  # before SIP listens: no call arrives to a bridge half started
        self.media = media
        tls = server_context(sip.tls_cert, sip.tls_key) if sip.tls_cert else None
        self.transports.tls_client = client_context(sip.tls_ca, sip.tls_verify)
        await self.transports.start(sip.bind, sip.udp_port, sip.tcp_port, tls, sip.tls_port)
        timers = TimerConfig(t1=sip.t1_ms / 1000, t2=sip.t2_ms / 1000, t4=sip.t4_ms / 1000)
        self.ua = UserAgent(
            host=self.config.advertise_address,
            udp_port=self.transports.udp_port,
            tcp_port=self.transports.tcp_port,
            tls_port=self.transports.tls_port,
            timers=timers,
            user_agent=sip.user_agent,
            max_message_bytes=sip.max_message_bytes,
            session_timers=SessionTimerConfig(sip.session_expires_s, sip.min_se_s),
            keepalive_s=float(sip.keepalive_options_s),
        )
        self.core = ConferenceCore(
            self.config, lambda leg, room: media.reserve(leg, sip.bind, room), wall_clock=time.time
        )
        await self._register_with_trunk()
        self._tasks = [
            asyncio.create_task(self.clock.run(self._tick)),
            asyncio.create_task(self._watchdog()),
        ]
        if sip.keepalive_crlf_s:
            self._tasks.append(asyncio.create_task(self._crlf_keepalives(sip.keepalive_crlf_s)))
        log.info(
            "bridge.started",
            sip_udp=self.transports.udp_port,
            sip_tcp=self.transports.tcp_port,
            sip_tls=self.transports.tls_port or None,
            advertise=self.config.advertise_address,
            rtp_ports=f"{rtp.port_min}-{rtp.port_max}",
            media_workers=self.config.media.worker_count,
        )
        return self

    async def stop(self) -> None:
        """Hang up every call (BYE), give the BYEs a moment on the wire, close the sockets."""
        if self.core is not None and self.loop is not None:
            assert self.ua is not None
            for registration in list(self.ua.registrations):
                self.ua.unregister(registration, self.loop.time())
            self.core.hang_up_all("shutdown")
            self.flush(self.loop.time())
            await asyncio.sleep(0.05)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._timer is not None:
            self._timer.cancel()
        if self.media is not None:
            await self.media.stop()
        self.transports.close()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        log.info(
            "bridge.stopped",
            ticks=self.clock.ticks,
            skipped_ticks=self.clock.skipped,
            cpu_user_s=round(usage.ru_utime, 3),
            cpu_system_s=round(usage.ru_stime, 3),
        )

    async def _register_with_trunk(self) -> None:
        """REGISTER with the trunk when configured; the UA keeps the binding refreshed. A trunk
        name that does not resolve is logged and the bridge runs unregistered."""
        dialout, sip = self.config.dialout, self.config.sip
        if not dialout.trunk_register or not dialout.trunk:
            return
        assert self.loop is not None and self.ua is not None
        host, _, port = dialout.trunk.partition(":")  # no port: 5060 (SRV is for calls)
        try:
            infos = await asyncio.wait_for(
                self.loop.getaddrinfo(host, None, family=socket.AF_INET, type=socket.SOCK_DGRAM),
                5.0,  # a start never hangs on DNS
            )
        except (OSError, TimeoutError) as exc:
            log.error("trunk.unresolved", trunk=dialout.trunk, error=str(exc))
            return
        user = dialout.trunk_username or "bridge"
        contact = URI(
            scheme="sip", user=user, host=self.config.advertise_address,
            port=self.transports.udp_port,
        )
        credentials = (
            Credentials(dialout.trunk_username, dialout.trunk_password)
            if dialout.trunk_username else None
        )
        registrar = Peer(str(infos[0][4][0]), int(port or 5060), "udp")
        self.ua.register(
            RegistrationConfig(
                registrar, URI(scheme="sip", user=user, host=host), Address(uri=contact),
                credentials, dialout.trunk_register_expires_s, sip.user_agent,
            ),
            self.now(),
        )
        self.flush(self.now())

    def now(self) -> float:
        assert self.loop is not None
        return self.loop.time()

    # --- SIP glue ---------------------------------------------------------------------------

    def _on_sip_message(self, data: bytes, peer: Peer) -> None:
        assert self.ua is not None
        now = self.now()
        shed = self.flood.check(data, peer.host, now)  # before parsing: a flood stays cheap
        if shed is not None:
            if shed:
                self.transports.send(Outgoing(shed, peer))
            return
        self.ua.receive_data(data, peer, now)
        self.flush(now)

    def _on_unreachable(self, peer: Peer) -> None:
        if self.ua is not None:
            now = self.now()
            self.ua.transport_failed(peer, now)
            self.flush(now)

    def _on_timer(self) -> None:
        assert self.ua is not None
        self._timer = None
        self._timer_deadline = None
        now = self.now()
        self.ua.handle_timer(now)
        self.flush(now)

    def flush(self, now: float) -> None:
        """Until nothing moves: UA events and media reports into the core, its outputs out.
        Then send what the SIP core produced and re-arm its timer."""
        ua, core, media = self.ua, self.core, self.media
        assert ua is not None and core is not None and media is not None and self.loop
        self._carry_out(now)  # what a control command or a timer produced
        while True:
            moved = False
            while (event := ua.next_event()) is not None:
                core.handle_ua_event(event, now)
                self._carry_out(now)
                moved = True
            for report in media.take_reports():
                core.handle_media_report(report, now)
                self._carry_out(now)
                moved = True
            if not moved:
                break
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

    def _carry_out(self, now: float) -> None:
        """What the core produced: SIP actions, media commands, bus events."""
        core, media = self.core, self.media
        assert core is not None and media is not None
        assert self.ua is not None
        for action in core.take_ua_actions():
            carry_out(self.ua, action, now)
        for command in core.take_media_commands():
            media.apply(command)
        for event in core.take_events():
            self.events.publish(event)

    # --- media clock ------------------------------------------------------------------------

    def _tick(self, now: float, deadline: float) -> None:
        """One 20 ms step of the rooms mixed here, then the core's timers (IVR timeouts,
        hang-ups after prompts, ring timeouts) and whatever the media reported."""
        assert self.core is not None and self.media is not None
        self.media.tick(now, deadline)
        self.core.handle_timer(now)
        self.flush(now)

    def _on_media_lost(self) -> None:
        """A media worker died: hang its calls up now, not at the next tick."""
        if self.core is not None and self.loop is not None:
            self.flush(self.now())

    async def _crlf_keepalives(self, interval_s: int) -> None:
        """RFC 5626 §3.5.1 pings on every TCP connection, so NATs keep them open."""
        while True:
            await asyncio.sleep(interval_s)
            self.transports.send_keepalives()

    async def _watchdog(self) -> None:
        assert self.media is not None
        while True:
            await asyncio.sleep(WATCHDOG_SECONDS)
            now = self.now()
            self.media.check(now, self.config.rtp.timeout_s)
            self.flush(now)
