"""The running server's side of the control port (`bridge.control_port`): each command runs
through the conference core with the loop's `now`, and what it produced goes out at once (not
at the next tick); questions are answered with snapshots of the core's legs and the media
backend's counters."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from sipmessage import URI

from bridge.conference.core import ConferenceCore
from bridge.conference.legs import Leg
from bridge.config import Config, RoomDefinition
from bridge.control_port import (
    BridgeStats,
    DialRequest,
    Gate,
    ParticipantView,
    RingingCall,
    RoomView,
    WorkerView,
)
from bridge.events import EventBus
from bridge.mixing.backend import MediaBackend
from bridge.mixing.workers.backend import WorkerMedia

if TYPE_CHECKING:
    from bridge.net.sip_transport import SipTransports
    from bridge.sip.flood import FloodGuard


class Host(Protocol):
    """What the control port needs of the running server."""

    config: Config
    events: EventBus
    core: ConferenceCore | None
    media: MediaBackend | None
    transports: SipTransports
    flood: FloodGuard

    def now(self) -> float: ...

    def flush(self, now: float) -> None: ...


class ServerControl:
    """`ConferenceControl` for a running BridgeServer."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.events = host.events

    @property
    def core(self) -> ConferenceCore:
        core = self.host.core
        assert core is not None, "the bridge is not started"
        return core

    def _run(self) -> None:
        self.host.flush(self.host.now())

    def set_gate(self, gate: Gate | None) -> None:
        self.core.gate = gate

    def sip_uri(self, user: str | None = None) -> str:
        host = f"{self.host.config.advertise_address}:{self.host.transports.udp_port}"
        return f"sip:{user}@{host}" if user else f"sip:{host}"

    def define_room(self, definition: RoomDefinition) -> None:
        self.core.define_room(definition)

    def forget_room(self, room: str, reason: str) -> None:
        self.core.forget_room(room, reason)
        self._run()

    def set_mixing(self, room: str, mixing: bool) -> None:
        self.core.set_mixing(room, mixing)
        self._run()

    def start_recording(self, room: str, path: str, fmt: str) -> bool:
        started = self.core.start_recording(room, path, fmt)
        self._run()
        return started

    def stop_recording(self, room: str) -> bool:
        stopping = self.core.stop_recording(room)
        self._run()
        return stopping

    def recording(self, room: str) -> str | None:
        return self.core.recordings.get(room)

    def play_to_participant(self, room: str, participant_id: str, prompt: str) -> bool:
        played = self.core.play_to_participant(room, participant_id, prompt)
        self._run()
        return played

    def play_to_room(self, room: str, prompt: str) -> None:
        self.core.play_to_room(room, prompt)
        self._run()

    def live_rooms(self) -> list[RoomView]:
        core = self.core
        return [
            RoomView(
                room.name,
                len(room.members),
                len(core.ringing_legs(room.name)),
                room.name in core.rooms.definitions,
            )
            for room in core.rooms.values()
        ]

    def participants(self, room: str) -> list[ParticipantView]:
        return [self._view(leg) for leg in self.core.members(room)]

    def find_participant(self, room: str, participant_id: str) -> ParticipantView | None:
        leg = self.core.find(room, participant_id)
        return self._view(leg) if leg is not None else None

    def ringing_calls(self, room: str) -> list[RingingCall]:
        return [
            RingingCall(leg.participant_id, room, leg.caller, leg.call_id, leg.started_at)
            for leg in self.core.ringing_legs(room)
        ]

    def set_muted(self, room: str, participant_id: str, muted: bool, by: str = "api") -> bool:
        leg = self.core.find(room, participant_id)
        if leg is None:
            return False
        self.core.set_muted(leg, muted, by)
        self._run()
        return True

    def set_option(self, room: str, participant_id: str, option: str, value: object) -> bool:
        leg = self.core.find(room, participant_id)
        if leg is None:
            return False
        self.core.set_option(leg, option, value)
        self._run()
        return True

    def eject(self, room: str, participant_id: str, reason: str = "ejected") -> bool:
        leg = self.core.find(room, participant_id)
        if leg is None:
            return False
        self.core.eject(leg, reason)
        self._run()
        return True

    def transfer(self, room: str, participant_id: str, target: str) -> bool:
        leg = self.core.find(room, participant_id)
        if leg is None:
            return False
        if target.lower().startswith(("sip:", "sips:")):
            uri = URI.parse(target)
        else:  # a room of this bridge
            uri = URI(
                scheme="sip",
                user=target,
                host=self.host.config.advertise_address,
                port=self.host.transports.udp_port,
            )
        self.core.transfer(leg, uri)
        self._run()
        return True

    def _ringing(self, room: str, call_id: str) -> Leg | None:
        return next(
            (leg for leg in self.core.ringing_legs(room) if leg.participant_id == call_id), None
        )

    def answer_ringing(self, room: str, call_id: str) -> bool:
        leg = self._ringing(room, call_id)
        if leg is None or not self.core.answer_ringing(leg, self.host.now()):
            return False
        self._run()
        return True

    def reject_ringing(self, room: str, call_id: str, status: int = 603) -> bool:
        leg = self._ringing(room, call_id)
        if leg is None or not self.core.reject_ringing(leg, status):
            return False
        self._run()
        return True

    def dial(self, request: DialRequest) -> None:
        self.core.dial(request, self.host.now())
        self._run()

    def cancel_dial(self, ref: str) -> bool:
        if not self.core.cancel_dial(ref):
            return False
        self._run()
        return True

    def stats(self) -> BridgeStats:
        core, media = self.core, self.host.media
        assert media is not None
        totals = media.totals()
        guard = core.guard.counters
        workers = None
        if isinstance(media, WorkerMedia):
            workers = tuple(
                WorkerView(
                    handle.index,
                    handle.process.pid,
                    media.rooms_on(handle.index),
                    handle.participants,
                    handle.cpu_seconds,
                    handle.restarts,
                )
                for handle in media.workers
            )
        return BridgeStats(
            calls_active=len(core.legs),
            rooms_active=sum(1 for room in core.rooms.values() if room.members),
            participants=sum(len(room.members) for room in core.rooms.values()),
            packets_in=totals.packets_in,
            packets_out=totals.packets_out,
            packets_lost=totals.packets_lost,
            rtp_unmatched=totals.unmatched,
            frames_concealed=totals.frames_concealed,
            frames_trimmed=totals.frames_trimmed,
            srtp_rejected=totals.srtp_rejected,
            lateness_counts=totals.lateness_counts,
            lateness_total_s=totals.lateness_total_s,
            workers=workers,
            wrong_codes=guard.wrong_codes,
            code_lockouts=guard.source_lockouts,
            code_alarms=guard.room_alarms,
            refused_locked=guard.refused_locked,
            flood_limited=self.host.flood.counters.limited,
            flood_sources=self.host.flood.counters.sources_limited,
        )

    def _view(self, leg: Leg) -> ParticipantView:
        media = self.host.media
        stats = media.stats(leg.key) if media is not None else None
        controls = leg.controls
        return ParticipantView(
            id=leg.participant_id,
            room=leg.room or "",
            caller=leg.caller,
            display_name=leg.display_name,
            call_id=leg.call_id,
            started_at=leg.started_at,
            joined_at=leg.joined_at,
            muted=controls.muted,
            deaf=controls.deaf,
            dtmf_enabled=leg.dtmf_enabled,
            held=controls.held,
            on_hold=leg.media.on_hold if leg.media is not None else False,
            talking=leg.talking,
            volume_db=controls.volume_db,
            codec=leg.media.codec if leg.media is not None else "",
            packets_in=stats.counters.packets_in if stats else 0,
            packets_out=stats.counters.packets_out if stats else 0,
            packets_lost=stats.lost if stats else 0,
            jitter_ms=round(stats.jitter_ms, 2) if stats else 0.0,
            srtp=leg.srtp is not None,
            srtp_rejected=stats.counters.srtp_rejected if stats else 0,
            frames_concealed=stats.concealed if stats else 0,
            frames_trimmed=stats.trimmed if stats else 0,
        )
