"""Call policy: which room a call joins, how its media is negotiated, what its keys do, when it
is hung up.

It consumes the UA core's events and the rooms' digits, and drives rooms, prompts and RTP
sockets. The asyncio server owns the loop; this class only needs `now` and a way to open RTP
sockets, so tests can run it in-process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from sipmessage import Request

from bridge.conference.callmedia import CallMedia, Plan
from bridge.conference.dialing import DialOutMixin
from bridge.conference.dialout import DialOut, DialStatus, outcome_of
from bridge.conference.ivr import (
    Admission,
    Admit,
    CodeEntry,
    IvrAction,
    Play,
    PoundToJoin,
    Refuse,
    admission,
)
from bridge.conference.keypad import Keypad, MenuAction, bindings_from_config
from bridge.conference.participant import Participant
from bridge.conference.placing import WorkerPlacementMixin
from bridge.conference.room import Room, valid_room_name
from bridge.config import Config, RoomDefinition
from bridge.events import (
    CallAlerting,
    CallFinished,
    DtmfReceived,
    EventBus,
    ParticipantChanged,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantMuted,
    ParticipantTalking,
)
from bridge.media.g711 import CODECS
from bridge.net.rtp_port import PortRangeExhausted, RtpPortPool, RtpSocket
from bridge.rtp.jitter import JitterBuffer
from bridge.sip.sdp import (
    AudioSession,
    SdpError,
    build_answer,
    build_offer,
    negotiate_answer,
    negotiate_offer,
    parse_sdp,
)
from bridge.sip.useragent import (
    Call,
    CallAnswered,
    CallConfirmed,
    CallEnded,
    CallFailed,
    CallProgress,
    IncomingCall,
    InfoReceived,
    ReInvite,
    UaEvent,
    UserAgent,
)
from bridge.workers.pool import WorkerPool

log = structlog.get_logger()

Scheduler = Callable[[float, Callable[[float], None]], None]
"""Run an action after a delay (seconds) with the then-current time; the server flushes after."""

VOLUME_STEP_DB = 3
VOLUME_LIMIT_DB = 12
LOBBY = "(lobby)"


@dataclass(frozen=True)
class Refusal:
    """A call turned away before it is answered: the SIP status, reason and extra headers
    (a Contact for a 302 to a divert target)."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ManualAnswer:
    """Ring (180) and wait: the control plane answers (`answer_pending`) or rejects."""


Gate = Callable[[str, str], Refusal | ManualAnswer | None]
"""(room, caller) -> a refusal, a manual answer, or None to let the room's own access rules
decide. The control plane's hook for conference states, locks and reservations; no I/O."""


def caller_number(request: Request) -> str:
    """The caller's number: the P-Asserted-Identity user part when present, else From's."""
    asserted = request.headers.get("P-Asserted-Identity")
    if asserted:
        start, end = asserted.find("sip:"), asserted.find("@")
        if start == -1:
            start, end = asserted.find("tel:"), len(asserted.rstrip(">"))
        if start != -1 and end > start + 4:
            return asserted[start + 4 : end].split(";")[0].strip(">")
    return request.from_address.uri.user or ""


@dataclass
class ConferenceService(DialOutMixin, WorkerPlacementMixin):
    config: Config
    ua: UserAgent
    ports: RtpPortPool
    schedule: Scheduler = field(default=lambda delay, action: None)
    events: EventBus = field(default_factory=EventBus)
    clock: Callable[[], float] = time.time  # wall clock, for event timestamps
    monotonic: Callable[[], float] = time.monotonic  # the loop's timebase, for tick lateness
    rooms: dict[str, Room] = field(default_factory=dict)
    media: dict[str, CallMedia] = field(default_factory=dict)
    attention: set[str] = field(default_factory=set)  # calls in the code IVR or hanging up
    gate: Gate | None = None
    dialouts: dict[str, DialOut] = field(default_factory=dict)  # by ref, while the call lasts
    pending: dict[str, Callable[[float], None]] = field(default_factory=dict)  # ringing, by key
    ended_totals: dict[str, int] = field(  # media counters of participants who have left
        default_factory=lambda: {"packets_in": 0, "packets_out": 0, "lost": 0}
    )
    workers: WorkerPool | None = None  # None: this process mixes every room
    room_workers: dict[str, int] = field(default_factory=dict)
    placed: dict[str, int] = field(default_factory=dict)
    mirrored_at: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.definitions: dict[str, RoomDefinition] = {r.name: r for r in self.config.room}
        for name in (*self.config.rooms.names, *self.definitions):
            self.rooms[name] = self._new_room(name)
        self.lobby = Room(LOBBY, max_participants=1_000_000, mixing=False)
        self.bindings = bindings_from_config(self.config.keypad)

    # --- UA events --------------------------------------------------------------------------

    def handle(self, event: UaEvent, now: float) -> None:
        if isinstance(event, IncomingCall):
            self._on_incoming(event.call, event.offer, now)
        elif isinstance(event, CallConfirmed):
            self._on_confirmed(event.call, event.answer, now)
        elif isinstance(event, ReInvite):
            self._on_reinvite(event.call, event.offer, now)
        elif isinstance(event, CallEnded):
            self._end_media(event.call.key, event.reason)
        elif isinstance(event, CallProgress):
            dialout = self._dialout_of(event.call)
            if dialout is not None and dialout.status is DialStatus.DIALLING:
                dialout.status = DialStatus.RINGING
        elif isinstance(event, CallAnswered):
            self._on_dial_answered(event.call, event.answer, now)
        elif isinstance(event, CallFailed):
            media = self.media.get(event.call.key)
            if media is not None and media.dialout is not None:
                media.dialout.sip_status = event.status
                self._settle(media.dialout, outcome_of(event.status), event.reason)
            self._end_media(event.call.key, f"{event.status} {event.reason}")
        elif isinstance(event, InfoReceived):
            media = self.media.get(event.call.key)
            if media is not None and media.participant is not None:
                self._on_digit(media.participant, event.digit, "info", now)

    def _plan(self, call: Call, caller: str) -> Plan | Refusal:
        """Where this call goes, or how to turn it away."""
        name = call.room
        if not name or name in self.config.rooms.ivr_users:
            return Plan(Admission.ASK_CODE, code_for=self._room_for_code)
        if not valid_room_name(name) and name not in self.definitions:
            return Refusal(404, "Invalid room name")  # managed rooms may have longer names
        gate = self.gate(name, caller) if self.gate is not None else None
        if isinstance(gate, Refusal):
            return gate
        manual = isinstance(gate, ManualAnswer)
        definition = self.definitions.get(name)
        if name not in self.rooms and not self.config.rooms.auto_create:
            return Refusal(404, "No such room")
        decision = admission(definition, caller)
        if decision is Admission.ASK_CODE:
            assert definition is not None
            code = definition.code
            return Plan(
                decision,
                name,
                code_for=lambda entered: name if entered == code else None,
                manual=manual,
            )
        if decision is Admission.JOIN and self._room_is_full(name):
            return Refusal(486, "Room full")
        return Plan(decision, name, manual=manual)

    def _room_for_code(self, code: str) -> str | None:
        return next((r.name for r in self.definitions.values() if r.code and r.code == code), None)

    def _room_is_full(self, name: str) -> bool:
        room = self.rooms.get(name)
        return room is not None and room.full

    def _new_room(self, name: str) -> Room:
        definition = self.definitions.get(name)
        limit = (
            definition.max_participants if definition else 0
        ) or self.config.rooms.max_participants
        return Room(name, limit)

    def _on_incoming(self, call: Call, offer: bytes | None, now: float) -> None:
        caller = caller_number(call.invite)
        started_at = self.clock()
        plan = self._plan(call, caller)
        if isinstance(plan, Refusal):
            self._refuse(call, caller, started_at, plan, now)
            return
        session: AudioSession | None = None
        if offer:
            try:
                session = negotiate_offer(parse_sdp(offer), self.config.rtp.codecs)
            except SdpError as exc:
                self._refuse(call, caller, started_at, Refusal(exc.status, _reason(str(exc))), now)
                return
        try:
            sock = RtpSocket(self.ports.bind(self.config.sip.bind), self.ports)
        except PortRangeExhausted:
            self._refuse(call, caller, started_at, Refusal(503, "No RTP port free"), now)
            return
        media = CallMedia(
            call,
            plan,
            sock,
            session_id=random.randrange(1, 2**31),
            caller=caller,
            started_at=started_at,
        )
        self.media[call.key] = media
        host = self.config.advertise_address
        if session is None:
            media.offered_in_answer = True
            sdp = build_offer(
                local_host=host,
                local_port=sock.port,
                session_id=media.session_id,
                version=media.sdp_version,
                codecs=self.config.rtp.codecs,
            )
        else:
            assert offer is not None
            sdp = build_answer(
                parse_sdp(offer),
                session,
                local_host=host,
                local_port=sock.port,
                session_id=media.session_id,
                version=media.sdp_version,
            )
        asyncio.get_running_loop().create_task(sock.open(self._receiver(call.key)))
        self.events.publish(
            CallAlerting(
                self.clock(), plan.room or call.room, call.local_tag, call.invite.call_id, caller,
                plan.manual,
            )
        )
        delay = self.config.sip.answer_delay_ms / 1000
        if plan.manual:
            self.ua.ringing(call, now)
            self.pending[call.key] = lambda later: self._answer(media, sdp, session, later)
        elif delay > 0:
            self.ua.ringing(call, now)
            self.schedule(delay, lambda later: self._answer(media, sdp, session, later))
        else:
            self._answer(media, sdp, session, now)

    def _refuse(
        self, call: Call, caller: str, started_at: float, refusal: Refusal, now: float
    ) -> None:
        self.ua.reject(call, refusal.status, now, reason=refusal.reason, headers=refusal.headers)
        log.info(
            "call.rejected",
            call_id=call.invite.call_id,
            room=call.room,
            status=refusal.status,
            reason=refusal.reason,
        )
        self.events.publish(
            CallFinished(
                self.clock(),
                call.room,
                "",
                call.invite.call_id,
                caller,
                started_at,
                None,
                refusal.status,
                refusal.reason,
            )
        )

    def answer_pending(self, call_key: str, now: float) -> bool:
        """Answer a call left ringing for the control plane; False when none is."""
        answer = self.pending.pop(call_key, None)
        if answer is None:
            return False
        answer(now)
        return True

    def reject_pending(self, call_key: str, now: float, status: int = 603) -> bool:
        """Turn away a call left ringing (603 Decline); False when none is."""
        media = self.media.get(call_key)
        if self.pending.pop(call_key, None) is None or media is None:
            return False
        self.ua.reject(media.call, status, now, reason="Declined")
        self._end_media(call_key, "declined")
        return True

    def ringing_calls(self, room: str) -> list[CallMedia]:
        """Calls left ringing for the control plane in `room`."""
        return [
            m for key in self.pending if (m := self.media.get(key)) and m.plan.room == room
        ]

    def _answer(
        self, media: CallMedia, sdp: bytes, session: AudioSession | None, now: float
    ) -> None:
        if self.media.get(media.call.key) is not media:
            return  # cancelled while ringing
        self.ua.answer(media.call, sdp, now)
        media.answered_at = self.clock()
        log.info(
            "call.answered",
            call_id=media.call.invite.call_id,
            room=media.call.room,
            caller=media.caller,
        )
        if session is not None:
            self._start(media, session, now)

    def _on_confirmed(self, call: Call, answer: bytes | None, now: float) -> None:
        media = self.media.get(call.key)
        if media is None or not media.offered_in_answer or media.participant is not None:
            return
        try:
            if not answer:
                raise SdpError("ACK carried no SDP answer to our offer", 488)
            session = negotiate_answer(parse_sdp(answer), self.config.rtp.codecs)
        except SdpError as exc:
            log.info("call.bad_answer", call_id=call.invite.call_id, reason=str(exc))
            self.hangup(call.key, now, reason="bad SDP answer")
            return
        self._start(media, session, now)

    def _on_reinvite(self, call: Call, offer: bytes | None, now: float) -> None:
        media = self.media.get(call.key)
        if media is None or media.participant is None:
            self.ua.reject_reinvite(call, 491 if media else 481, now)
            return
        if not offer:
            # An offerless re-INVITE would need the answer from its ACK; refresh-style only.
            self.ua.reject_reinvite(call, 488, now, reason="Re-INVITE without SDP not supported")
            return
        try:
            description = parse_sdp(offer)
            session = negotiate_offer(description, self.config.rtp.codecs)
        except SdpError as exc:
            self.ua.reject_reinvite(call, exc.status, now, reason=_reason(str(exc)))
            return
        participant = media.participant
        participant.remote = (session.remote_host, session.remote_port)
        participant.on_hold = session.on_hold
        participant.telephone_event_pt = (
            session.telephone_event.payload_type if session.telephone_event else None
        )
        participant.codec = CODECS[session.codec.encoding.upper()]
        self._sync(participant)
        media.sdp_version += 1
        sdp = build_answer(
            description,
            session,
            local_host=self.config.advertise_address,
            local_port=media.socket.port,
            session_id=media.session_id,
            version=media.sdp_version,
        )
        self.ua.answer_reinvite(call, sdp, now)
        log.info(
            "participant.hold" if session.on_hold else "participant.resume",
            room=participant.room,
            participant=participant.id,
        )

    # --- media and admission ----------------------------------------------------------------

    def _start(self, media: CallMedia, session: AudioSession, now: float) -> None:
        """Media is up: join the room, or wait in the lobby for a code, or refuse politely."""
        call = media.call
        rtp = self.config.rtp
        participant = Participant(
            id=call.local_tag,
            call_key=call.key,
            room=LOBBY,
            caller=media.caller,
            display_name=call.invite.from_address.name,
            codec=CODECS[session.codec.encoding.upper()],
            remote=(session.remote_host, session.remote_port),
            signalling_host=call.peer.host,
            send=media.socket.send,
            jitter=JitterBuffer(rtp.jitter_target_ms // 20, rtp.jitter_max_ms // 20),
            telephone_event_pt=(
                session.telephone_event.payload_type if session.telephone_event else None
            ),
            on_hold=session.on_hold,
            last_rtp=now,
            joined_at=now,
        )
        media.participant = participant
        plan = media.plan
        if plan.admission is Admission.JOIN:
            self._join(media, plan.room, now)
            return
        self.lobby.add(participant)
        if plan.admission is Admission.CONFIRM:
            media.code_entry = PoundToJoin(plan.room, float(self.config.dialout.confirm_timeout_s))
            self.attention.add(media.call.key)
            self._ivr_actions(media, media.code_entry.start(now), now)
            return
        if plan.admission is Admission.REFUSE:
            participant.prompts.play("not_allowed", replace_room_audio=True)
            self._hang_up_after_prompts(media, "caller not allowed")
            log.info("call.refused", room=plan.room, caller=media.caller)
            return
        assert plan.code_for is not None
        media.code_entry = CodeEntry(
            plan.code_for, self.config.rooms.code_attempts, self.config.rooms.code_timeout_s
        )
        self.attention.add(media.call.key)
        self._ivr_actions(media, media.code_entry.start(now), now)

    def _join(self, media: CallMedia, name: str, now: float) -> None:
        participant = media.participant
        assert participant is not None
        room = self.rooms.get(name)
        if room is None:
            room = self.rooms[name] = self._new_room(name)
            log.info("room.created", room=name)
        if room.full:
            participant.prompts.play("conference_locked", replace_room_audio=True)
            self._hang_up_after_prompts(media, "room full")
            return
        self.lobby.remove(participant)
        others = list(room.participants)
        room.add(participant)
        participant.joined_at = now
        participant.joined_wall = self.clock()
        self._place(media, room)
        media.keypad = Keypad(self.bindings)
        announce = self.config.announcements
        if not others and announce.only_participant:
            participant.prompts.play("only_participant")
        self._chime(others, "join")
        log.info(
            "participant.joined",
            room=name,
            participant=participant.id,
            caller=participant.caller,
            codec=participant.codec.name,
            count=len(room.participants),
        )
        self.events.publish(
            ParticipantJoined(self.clock(), name, participant.id, participant.caller)
        )

    def _chime(self, listeners: list[Participant], prompt: str) -> None:
        """Join/leave tones for small rooms, never queued behind another prompt: a burst of
        arrivals gives one chime, not a queue of them."""
        announce = self.config.announcements
        if not announce.join_leave_tones or len(listeners) >= announce.tones_max_room:
            return
        for listener in listeners:
            if not listener.prompts.busy:
                listener.prompts.play(prompt)

    def _ivr_actions(self, media: CallMedia, actions: list[IvrAction], now: float) -> None:
        participant = media.participant
        assert participant is not None
        for action in actions:
            if isinstance(action, Play):
                participant.prompts.play(action.prompt, replace_room_audio=True)
            elif isinstance(action, Admit):
                media.code_entry = None
                participant.prompts.clear()
                self._join(media, action.room, now)
                if media.dialout is not None:
                    self._settle(media.dialout, DialStatus.ANSWERED, participant.id)
            elif isinstance(action, Refuse):
                if media.dialout is not None:
                    self._settle(media.dialout, DialStatus.UNANSWERED, action.reason)
                self._hang_up_after_prompts(media, action.reason)
                log.info(
                    "call.refused", room=media.plan.room, caller=media.caller, reason=action.reason
                )

    def _on_digit(self, participant: Participant, digit: str, method: str, now: float) -> None:
        media = self.media.get(participant.call_key)
        if media is None:
            return
        self.events.publish(
            DtmfReceived(self.clock(), participant.room, participant.id, digit, method)
        )
        if media.code_entry is not None:
            participant.prompts.clear()  # barge-in: a key press stops the prompt playing
            self._ivr_actions(media, media.code_entry.press(digit, now), now)
            return
        if media.keypad is None or not participant.dtmf_enabled or media.hangup_reason:
            return
        action = media.keypad.press(digit, now)
        if action is MenuAction.TOGGLE_MUTE:
            self.set_muted(participant, not participant.muted, by="keypad")
            participant.prompts.play("muted" if participant.muted else "unmuted")
        elif action in (MenuAction.VOLUME_UP, MenuAction.VOLUME_DOWN):
            step = VOLUME_STEP_DB if action is MenuAction.VOLUME_UP else -VOLUME_STEP_DB
            participant.volume_db = max(
                -VOLUME_LIMIT_DB, min(VOLUME_LIMIT_DB, participant.volume_db + step)
            )
            self._sync(participant)
            participant.prompts.play(action.value)
        elif action is MenuAction.LEAVE:
            participant.prompts.play("goodbye", replace_room_audio=True)
            self._hang_up_after_prompts(media, "left by keypad")

    def _hang_up_after_prompts(self, media: CallMedia, reason: str) -> None:
        media.hangup_reason = reason
        self.attention.add(media.call.key)

    def set_muted(self, participant: Participant, muted: bool, by: str) -> None:
        if participant.muted == muted:
            return
        participant.muted = muted
        self._sync(participant)
        self.events.publish(
            ParticipantMuted(self.clock(), participant.room, participant.id, muted, by)
        )

    # --- the control plane's operations (no I/O; called from the API and the scheduler) ------

    def define_room(self, definition: RoomDefinition) -> Room:
        """Create or update a managed room: its access rules and participant limit."""
        self.definitions[definition.name] = definition
        room = self.rooms.get(definition.name)
        if room is None:
            room = self.rooms[definition.name] = self._new_room(definition.name)
        room.max_participants = definition.max_participants or self.config.rooms.max_participants
        return room

    def forget_room(self, name: str, now: float, reason: str) -> None:
        """A managed room is over: hang everyone up and drop its rules."""
        self.hang_up_room(name, now, reason)
        self.definitions.pop(name, None)
        room = self.rooms.get(name)
        if room is not None and not room.participants and name not in self.config.rooms.names:
            del self.rooms[name]

    def participants(self, room: str) -> list[Participant]:
        current = self.rooms.get(room)
        return list(current.participants) if current else []

    def find_participant(self, room: str, participant_id: str) -> Participant | None:
        current = self.rooms.get(room)
        return current.find(participant_id) if current else None

    def set_option(self, participant: Participant, option: str, value: object) -> None:
        """Set deaf, held, dtmf_enabled or volume_db (muted goes through `set_muted`)."""
        if option not in ("deaf", "held", "dtmf_enabled", "volume_db"):
            raise ValueError(f"unknown participant option {option!r}")
        if getattr(participant, option) == value:
            return
        setattr(participant, option, value)
        self._sync(participant)
        self.events.publish(
            ParticipantChanged(self.clock(), participant.room, participant.id, option, value)
        )

    def eject(self, participant: Participant, now: float, reason: str = "ejected") -> None:
        self.hangup(participant.call_key, now, reason)

    def hang_up_room(self, room: str, now: float, reason: str) -> None:
        for participant in self.participants(room):
            self.hangup(participant.call_key, now, reason)

    def play_to_room(self, room: str, prompt: str) -> None:
        for participant in self.participants(room):
            participant.prompts.play(prompt)

    def set_mixing(self, room: str, mixing: bool) -> None:
        """False while a conference is HOLDING: callers wait without hearing each other."""
        current = self.rooms.get(room)
        if current is not None:
            current.mixing = mixing
            self._sync_mixing(current)

    def _receiver(self, call_key: str) -> Callable[[bytes, tuple[str, int]], None]:
        loop = asyncio.get_running_loop()
        media_by_key = self.media

        def on_packet(data: bytes, source: tuple[str, int]) -> None:
            media = media_by_key.get(call_key)
            if media is not None and media.participant is not None:
                media.participant.receive_rtp(data, source, loop.time())

        return on_packet

    # --- ending calls -----------------------------------------------------------------------

    def hangup(self, call_key: str, now: float, reason: str) -> None:
        """End a call from the bridge's side (BYE) and free its media."""
        media = self.media.get(call_key)
        if media is None:
            return
        self.ua.hangup(media.call, now, reason=reason)
        self._end_media(call_key, reason)

    def _end_media(self, call_key: str, reason: str) -> None:
        media = self.media.pop(call_key, None)
        self.attention.discard(call_key)
        self.pending.pop(call_key, None)
        if media is None:
            return
        media.socket.close()
        participant = media.participant
        if media.dialout is not None:
            self._finish_dialout(media.dialout, participant, reason)
            return
        self.events.publish(
            CallFinished(
                self.clock(),
                participant.room if participant is not None else media.plan.room or media.call.room,
                media.call.local_tag,  # the participant id the call has, or would have had
                media.call.invite.call_id,
                media.caller,
                media.started_at,
                media.answered_at,
                200 if media.answered_at is not None else 487,
                reason,
            )
        )
        self._leave(participant, reason)

    def _leave(self, participant: Participant | None, reason: str) -> None:
        if participant is None:
            return
        self.lobby.remove(participant)
        room = self.rooms.get(participant.room)
        if room is None or participant not in room.participants:
            return
        room.remove(participant)
        if not self._unplace(participant, room):  # else the worker reports the final counters
            self.ended_totals["packets_in"] += participant.counters.packets_in
            self.ended_totals["packets_out"] += participant.counters.packets_out
            self.ended_totals["lost"] += participant.jitter.stats.lost
        self._chime(room.participants, "leave")
        log.info(
            "participant.left",
            room=room.name,
            participant=participant.id,
            reason=reason,
            count=len(room.participants),
            packets_in=participant.counters.packets_in,
            lost=participant.jitter.stats.lost,
        )
        self.events.publish(ParticipantLeft(self.clock(), room.name, participant.id, reason))
        if (
            not room.participants
            and room.name not in self.config.rooms.names
            and room.name not in self.definitions
        ):
            self.rooms.pop(room.name, None)
            log.info("room.closed", room=room.name, **dataclasses.asdict(room.stats))

    def check_rtp_timeouts(self, now: float) -> None:
        """Hang up calls whose RTP stopped (a vanished phone must not hold a seat forever)."""
        limit = self.config.rtp.timeout_s
        for key, media in list(self.media.items()):
            participant = media.participant
            if participant is None or participant.on_hold:
                continue
            if self._rtp_known_until(key, now) - participant.last_rtp > limit:
                self.hangup(key, now, reason="rtp_timeout")

    def hangup_all(self, now: float, reason: str) -> None:
        for key in list(self.media):
            self.hangup(key, now, reason)

    # --- the media clock --------------------------------------------------------------------

    def tick(self, now: float, deadline: float) -> None:
        """One 20 ms step of every room mixed here, then act on the keys pressed and prompts
        finished, here and on the workers."""
        self._take_worker_reports(now)
        digits = self.lobby.tick()
        self.lobby.talk_changes.clear()
        for room in list(self.rooms.values()):
            if room.name in self.room_workers:
                continue
            room.stats.record(self.monotonic() - deadline)
            digits.extend(room.tick())
            if room.talk_changes:
                stamp = self.clock()
                for who in room.talk_changes:
                    self.events.publish(
                        ParticipantTalking(stamp, room.name, who.id, who.voice.talking)
                    )
                room.talk_changes.clear()
        for participant, digit, method in digits:
            self._on_digit(participant, digit, method, now)
        for key in list(self.attention):
            media = self.media.get(key)
            if media is None or (media.code_entry is None and not media.hangup_reason):
                self.attention.discard(key)
                continue
            if media.code_entry is not None:
                self._ivr_actions(media, media.code_entry.tick(now), now)
            if (
                media.hangup_reason
                and media.participant is not None
                and not media.participant.prompts.busy
            ):
                self.hangup(key, now, media.hangup_reason)


def _reason(text: str) -> str:
    """A reason phrase may not contain CR/LF; keep it short."""
    return " ".join(text.split())[:100]
