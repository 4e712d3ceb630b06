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

from bridge.conference.dialout import DialOut
from bridge.conference.participant import Participant
from bridge.conference.service import ConferenceService
from bridge.config import Config, RoomDefinition
from bridge.control_port import (
    PARTICIPANT_OPTIONS,
    BridgeStats,
    DialRequest,
    Gate,
    ParticipantView,
    RingingCall,
    WorkerView,
)
from bridge.events import EventBus
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
        self.control = ServerControl(self)

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


class ServerControl:
    """`ConferenceControl` for a running BridgeServer."""

    def __init__(self, server: BridgeServer) -> None:
        self.server = server

    @property
    def _service(self):  # type: ignore[no-untyped-def]
        service = self.server.service
        assert service is not None, "the bridge is not started"
        return service

    def _now(self) -> float:
        assert self.server.loop is not None
        return self.server.loop.time()

    def _done(self) -> None:
        self.server._flush(self._now())

    @property
    def events(self) -> EventBus:
        return self._service.events

    def set_gate(self, gate: Gate | None) -> None:
        self._service.gate = gate

    def sip_uri(self, user: str | None = None) -> str:
        host = f"{self.server.config.advertise_address}:{self.server.transports.udp_port}"
        return f"sip:{user}@{host}" if user else f"sip:{host}"

    def define_room(self, definition: RoomDefinition) -> None:
        self._service.define_room(definition)

    def forget_room(self, room: str, reason: str) -> None:
        self._service.forget_room(room, self._now(), reason)
        self._done()

    def set_mixing(self, room: str, mixing: bool) -> None:
        self._service.set_mixing(room, mixing)

    def play_to_room(self, room: str, prompt: str) -> None:
        self._service.play_to_room(room, prompt)

    def participants(self, room: str) -> list[ParticipantView]:
        return [self._view(p) for p in self._service.participants(room)]

    def find_participant(self, room: str, participant_id: str) -> ParticipantView | None:
        found = self._service.find_participant(room, participant_id)
        return self._view(found) if found is not None else None

    def ringing_calls(self, room: str) -> list[RingingCall]:
        return [
            RingingCall(m.call.local_tag, room, m.caller, m.call.invite.call_id, m.started_at)
            for m in self._service.ringing_calls(room)
        ]

    def set_muted(self, room: str, participant_id: str, muted: bool, by: str = "api") -> bool:
        found = self._service.find_participant(room, participant_id)
        if found is None:
            return False
        self._service.set_muted(found, muted, by=by)
        return True

    def set_option(self, room: str, participant_id: str, option: str, value: object) -> bool:
        if option not in PARTICIPANT_OPTIONS:
            raise ValueError(f"unknown participant option {option!r}")
        found = self._service.find_participant(room, participant_id)
        if found is None:
            return False
        self._service.set_option(found, option, value)
        return True

    def eject(self, room: str, participant_id: str, reason: str = "ejected") -> bool:
        found = self._service.find_participant(room, participant_id)
        if found is None:
            return False
        self._service.eject(found, self._now(), reason)
        self._done()
        return True

    def _ringing_key(self, room: str, call_id: str) -> str | None:
        for media in self._service.ringing_calls(room):
            if media.call.local_tag == call_id:
                return str(media.call.key)
        return None

    def answer_ringing(self, room: str, call_id: str) -> bool:
        key = self._ringing_key(room, call_id)
        if key is None or not self._service.answer_pending(key, self._now()):
            return False
        self._done()
        return True

    def reject_ringing(self, room: str, call_id: str, status: int = 603) -> bool:
        key = self._ringing_key(room, call_id)
        if key is None or not self._service.reject_pending(key, self._now(), status):
            return False
        self._done()
        return True

    def dial(self, request: DialRequest) -> None:
        dialout = DialOut(
            ref=request.ref,
            room=request.room,
            dest=request.dest,
            caller_id=request.caller_id,
            confirm=request.confirm,
            started_at=0.0,
        )
        self._service.dial(
            dialout,
            target=request.target,
            peer=request.peer,
            now=self._now(),
            credentials=request.credentials,
            headers=request.headers,
        )
        self._done()

    def stats(self) -> BridgeStats:
        service = self._service
        people = [p for r in service.rooms.values() for p in r.participants]
        ended = service.ended_totals
        workers = self.server.workers
        lateness = workers.lateness if workers is not None else self.server.lateness
        views = None
        if workers is not None:
            views = tuple(
                WorkerView(
                    handle.index,
                    handle.process.pid,
                    sum(1 for w in service.room_workers.values() if w == handle.index),
                    handle.participants,
                    handle.cpu_seconds,
                    handle.restarts,
                )
                for handle in workers.workers
            )
        return BridgeStats(
            calls_active=len(service.media),
            rooms_active=sum(1 for r in service.rooms.values() if r.participants),
            participants=len(people),
            packets_in=ended["packets_in"] + sum(p.counters.packets_in for p in people),
            packets_out=ended["packets_out"] + sum(p.counters.packets_out for p in people),
            packets_lost=ended["lost"] + sum(p.jitter.stats.lost for p in people),
            lateness_counts=tuple(lateness.counts),
            lateness_total_s=lateness.total_s,
            workers=views,
        )

    def _view(self, participant: Participant) -> ParticipantView:
        media = self._service.media.get(participant.call_key)
        stats = participant.jitter.stats
        return ParticipantView(
            id=participant.id,
            room=participant.room,
            caller=participant.caller,
            display_name=participant.display_name,
            call_id=media.call.invite.call_id if media is not None else "",
            started_at=media.started_at if media is not None else participant.joined_wall,
            joined_at=participant.joined_wall,
            muted=participant.muted,
            deaf=participant.deaf,
            dtmf_enabled=participant.dtmf_enabled,
            held=participant.held,
            on_hold=participant.on_hold,
            talking=participant.voice.talking,
            volume_db=participant.volume_db,
            codec=participant.codec.name,
            packets_in=participant.counters.packets_in,
            packets_out=participant.counters.packets_out,
            packets_lost=stats.lost,
            jitter_ms=round(stats.jitter_ms, 2),
        )
