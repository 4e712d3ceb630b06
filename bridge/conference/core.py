"""The conference core: call policy, sans-I/O.

UA events, media reports, control commands and `now` go in; SIP actions for the user agent,
commands for the media backend and events for the bus come out (`take_ua_actions`,
`take_media_commands`, `take_events`), as the `UserAgent` does for SIP. It decides which room a
call joins, how its media is negotiated, what its keys do, when it is hung up, and runs the
calls the conference places. It never touches a socket, a task or a clock: time comes in as
`now` (the loop's clock, for deadlines) and from the injected `wall_clock` (epoch seconds, for
events and records); RTP ports come from the injected `reserve_port`.
"""

from __future__ import annotations

import enum
import heapq
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import structlog
from sipmessage import URI

from bridge.conference.actions import (
    AcceptTransfer,
    Answer,
    AnswerReinvite,
    Cancel,
    HangUp,
    PlaceCall,
    Reject,
    RejectReinvite,
    RejectTransfer,
    Ringing,
    Transfer,
    UaAction,
)
from bridge.conference.admission import Plan, caller_number, plan_incoming
from bridge.conference.callin import CallIn
from bridge.conference.dialout import (
    DialOut,
    DialStatus,
    ended_event,
    outcome_of,
    ringing_event,
    settled_event,
)
from bridge.conference.ivr import (
    Admission,
    Admit,
    CodeEntry,
    IvrAction,
    Play,
    PoundToJoin,
    Refuse,
    WrongCode,
)
from bridge.conference.keypad import Keypad, MenuAction, bindings_from_config
from bridge.conference.legs import Leg, negotiated, reason_phrase
from bridge.conference.lockout import CodeGuard, Lockout, LockoutRules
from bridge.conference.rooms import Rooms, RoomState
from bridge.config import Config, RoomDefinition
from bridge.control_port import PARTICIPANT_OPTIONS, DialRequest, Gate, Refusal, Reroute
from bridge.events import (
    BridgeEvent,
    CallAlerting,
    CallFinished,
    CodeLockout,
    DtmfReceived,
    ParticipantChanged,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantMuted,
    ParticipantTalking,
    RecordingStarted,
    RecordingStopped,
)
from bridge.mixing.backend import (
    AddParticipant,
    ClearPrompts,
    DigitPressed,
    Identity,
    MediaCommand,
    MediaReport,
    MoveParticipant,
    ParticipantLost,
    PlayPrompt,
    PromptsIdle,
    RecordingEnded,
    RemoveParticipant,
    SetRoomMixing,
    StartRecording,
    StopRecording,
    TalkingChanged,
    UpdateControls,
    UpdateMedia,
)
from bridge.sip.message import new_call_id, new_tag
from bridge.sip.sdp import AudioSession, SdpError
from bridge.sip.useragent import (
    Call,
    CallAnswered,
    CallConfirmed,
    CallEnded,
    CallFailed,
    CallProgress,
    IncomingCall,
    InfoReceived,
    RegistrationChanged,
    ReInvite,
    TransferRequested,
    TransferResult,
    UaEvent,
)

log = structlog.get_logger()

VOLUME_STEP_DB = 3
VOLUME_LIMIT_DB = 12
PortReserver = Callable[[str, str | None], int | None]  # (leg, its room if known) -> port
"""leg key -> an RTP port bound for it, or None when the range is exhausted."""


class Due(enum.Enum):
    """What a leg's timer is for."""

    ANSWER = "answer"  # the answer delay is over
    RING_TIMEOUT = "ring_timeout"  # our INVITE rang too long: CANCEL
    MAX_DURATION = "max_duration"  # a placed call lasted its maximum: BYE
    NO_ANSWER = "no_answer"  # a call left ringing for the control plane rang too long


@dataclass(order=True, frozen=True)
class _Timer:
    deadline: float
    order: int
    leg: str = field(compare=False)
    due: Due = field(compare=False)


class ConferenceCore:
    """Call policy for every leg and room of one bridge; see the module docstring for its
    inputs and outputs. The server glue is its only caller."""

    def __init__(
        self,
        config: Config,
        reserve_port: PortReserver,
        wall_clock: Callable[[], float],
        gate: Gate | None = None,
    ) -> None:
        self.config = config
        self.reserve_port = reserve_port
        self.wall_clock = wall_clock
        self.gate = gate
        self.rooms = Rooms(config)
        self.recordings: dict[str, str] = {}  # room -> the file its recording writes
        self.legs: dict[str, Leg] = {}
        self.ringing: set[str] = set()  # legs left ringing for the control plane
        self.attention: set[str] = set()  # legs in an IVR dialogue or hanging up
        self.bindings = bindings_from_config(config.keypad)
        self.callin = CallIn(
            config.peer, config.sip.allow_guests, config.advertise_address,
            config.sip.digest_algorithms,
        )  # fmt: skip
        security = config.security
        self.guard = CodeGuard(
            LockoutRules(
                security.code_lockout_attempts,
                security.code_lockout_window_s,
                security.code_lockout_s,
                security.code_alarm_attempts,
            )
        )
        self._timers: list[_Timer] = []
        self._timer_order = 0
        self._ua: list[UaAction] = []
        self._media: list[MediaCommand] = []
        self._events: list[BridgeEvent] = []

    # --- outputs ----------------------------------------------------------------------------

    def take_ua_actions(self) -> list[UaAction]:
        actions, self._ua = self._ua, []
        return actions

    def take_media_commands(self) -> list[MediaCommand]:
        commands, self._media = self._media, []
        return commands

    def take_events(self) -> list[BridgeEvent]:
        events, self._events = self._events, []
        return events

    def get_timer(self) -> float | None:
        """The next deadline `handle_timer` must run at (the server also runs it every tick,
        for IVR timeouts and hang-ups waiting for prompts)."""
        return self._timers[0].deadline if self._timers else None

    # --- UA events --------------------------------------------------------------------------

    def handle_ua_event(self, event: UaEvent, now: float) -> None:
        if isinstance(event, IncomingCall):
            self._on_incoming(event.call, event.offer, now)
            return
        if isinstance(event, RegistrationChanged):
            registration = event.registration
            log.info(
                "trunk.registration", state=registration.state.value, status=registration.status,
                reason=registration.reason, aor=str(registration.config.aor),
            )
            return
        leg = self.legs.get(event.call.key)  # type: ignore[attr-defined]
        if leg is None:
            if isinstance(event, ReInvite):
                self._ua.append(RejectReinvite(event.call.key, 481))
            return
        if isinstance(event, CallConfirmed):
            self._on_confirmed(leg, event.answer, now)
        elif isinstance(event, ReInvite):
            self._on_reinvite(leg, event.offer)
        elif isinstance(event, CallEnded):
            self._end(leg, event.reason)
        elif isinstance(event, CallProgress):
            if leg.dialout is not None and leg.dialout.status is DialStatus.DIALLING:
                leg.dialout.status = DialStatus.RINGING
                self._events.append(ringing_event(leg.dialout, self.wall_clock()))
        elif isinstance(event, CallAnswered):
            self._on_dial_answered(leg, event.answer, now)
        elif isinstance(event, CallFailed):
            if leg.dialout is not None:
                leg.dialout.sip_status = event.status
                self._settle(leg.dialout, outcome_of(event.status), event.reason)
            self._end(leg, f"{event.status} {event.reason}")
        elif isinstance(event, InfoReceived) and leg.media is not None:
            self._on_digit(leg, event.digit, "info", now)
        elif isinstance(event, TransferRequested):
            self._on_transfer_requested(leg, event, now)
        elif isinstance(event, TransferResult):
            self._on_transfer_result(leg, event)

    # --- transfers (REFER) ------------------------------------------------------------------

    def _on_transfer_requested(self, leg: Leg, event: TransferRequested, now: float) -> None:
        """The phone asks by REFER to be moved: into another room of this bridge, on the same
        terms as a call to that room would get; nowhere else (the bridge places no call for a
        caller)."""
        refusal = self._transfer_refusal(leg, event)
        if refusal is not None:
            self._ua.append(RejectTransfer(leg.key, refusal.status, refusal.reason))
            return
        name = event.target.user or ""
        if name != leg.room:
            self._leave(leg, "transferred")
            self._join(leg, name, now)
        self._ua.append(AcceptTransfer(leg.key))

    def _transfer_refusal(self, leg: Leg, event: TransferRequested) -> Refusal | None:
        if leg.room is None or leg.media is None:
            return Refusal(403, "Not in a room yet")
        if not event.to_bridge:
            return Refusal(403, "The bridge transfers calls only into its own rooms")
        plan = plan_incoming(
            event.target.user or "", leg.caller, config=self.config,
            definitions=self.rooms.definitions, room_exists=self.rooms.__contains__,
            room_full=self.rooms.full, gate=self.gate,
        )
        if isinstance(plan, Refusal):
            return plan
        if plan.admission is not Admission.JOIN or plan.manual:
            return Refusal(403, "That room admits callers by code or by an operator")
        return None

    def _on_transfer_result(self, leg: Leg, event: TransferResult) -> None:
        """Our REFER ended: connected to the target, the participant's call with us ends."""
        if 200 <= event.status < 300:
            self._hang_up(leg, "transferred")
            return
        log.info(
            "participant.transfer_failed", room=leg.room, participant=leg.participant_id,
            status=event.status, reason=event.reason,
        )

    def _on_incoming(self, call: Call, offer: bytes | None, now: float) -> None:
        caller = caller_number(call.invite)
        started_at = self.wall_clock()
        unwelcome = self.callin.refusal(call.peer.host, call.invite, started_at)
        if unwelcome is not None:  # sip.allow_guests = false: a peer or a digest user only
            self._refuse(call, caller, started_at, unwelcome)
            return
        plan = plan_incoming(
            call.room,
            caller,
            config=self.config,
            definitions=self.rooms.definitions,
            room_exists=self.rooms.__contains__,
            room_full=self.rooms.full,
            gate=self.gate,
        )
        asks_code = isinstance(plan, Plan) and plan.admission is Admission.ASK_CODE
        if asks_code and self.guard.refuse(call.peer.host, now):
            plan = Refusal(403, "Too many wrong codes")
        if isinstance(plan, Refusal):
            self._refuse(call, caller, started_at, plan)
            return
        leg = self._open_leg(
            call.key, call.local_tag, call.invite.call_id, call.room,
            call.invite.from_address.name or "", call.peer.host, plan, caller, started_at,
            transport=call.peer.transport,
        )
        if leg is None:
            self._refuse(call, caller, started_at, Refusal(503, "No RTP port free"))
            return
        session: AudioSession | None = None
        if offer:
            try:
                sdp, session = leg.answer(offer)
            except SdpError as exc:
                self._media.append(RemoveParticipant(leg.key))
                self._refuse(call, caller, started_at, Refusal(exc.status, reason_phrase(str(exc))))
                return
        else:
            leg.offered_in_answer = True
            sdp = leg.offer()
        self.legs[leg.key] = leg
        self._events.append(
            CallAlerting(
                self.wall_clock(), plan.room or call.room, call.local_tag, call.invite.call_id,
                caller, plan.manual,
            )
        )
        delay = self.config.sip.answer_delay_ms / 1000
        leg.pending_answer = (sdp, session)
        if plan.manual:
            self._ua.append(Ringing(leg.key))
            self.ringing.add(leg.key)
            if plan.unanswered is not None and plan.unanswered.after_s is not None:
                self._at(now + plan.unanswered.after_s, leg, Due.NO_ANSWER)
        elif delay > 0:
            self._ua.append(Ringing(leg.key))
            self._at(now + delay, leg, Due.ANSWER)
        else:
            self._answer(leg, now)

    def _open_leg(
        self, key: str, participant_id: str, call_id: str, dialled: str, display_name: str,
        peer_host: str, plan: Plan, caller: str, started_at: float,
        dialout: DialOut | None = None, transport: str = "udp",
    ) -> Leg | None:
        """One set-up for both directions: a port for our SDP, a session id; None when no
        RTP port is free."""
        port = self.reserve_port(key, plan.room or None)  # a named room's code admits only it
        if port is None:
            return None
        srtp = self.config.rtp.srtp
        return Leg(
            key, participant_id, call_id, dialled, display_name, peer_host, plan, port,
            session_id=random.randrange(1, 2**31),
            caller=caller,
            started_at=started_at,
            host=self.config.advertise_address,
            codecs=tuple(self.config.rtp.codecs),
            dialout=dialout,
            srtp_mode=srtp,
            # our offers use SRTP when it is required, or when it may be and signalling is TLS
            secure_offer=srtp == "mandatory" or (srtp == "optional" and transport == "tls"),
        )

    def _refuse(self, call: Call, caller: str, started_at: float, refusal: Refusal) -> None:
        self._ua.append(Reject(call.key, refusal.status, refusal.reason, refusal.headers))
        log.info(
            "call.rejected",
            call_id=call.invite.call_id,
            room=call.room,
            status=refusal.status,
            reason=refusal.reason,
        )
        self._events.append(
            CallFinished(
                self.wall_clock(), call.room, "", call.invite.call_id, caller, started_at, None,
                refusal.status, refusal.reason,
            )
        )

    def _answer(self, leg: Leg, now: float) -> None:
        assert leg.pending_answer is not None
        sdp, session = leg.pending_answer
        leg.pending_answer = None
        self._ua.append(Answer(leg.key, sdp))
        leg.answered_at = self.wall_clock()
        log.info(
            "call.answered", call_id=leg.call_id, room=leg.dialled, caller=leg.caller
        )
        if session is not None:
            self._start(leg, session, now)

    def _on_confirmed(self, leg: Leg, answer: bytes | None, now: float) -> None:
        if not leg.offered_in_answer or leg.media is not None:
            return
        try:
            session = leg.take_answer(answer, "ACK")
        except SdpError as exc:
            log.info("call.bad_answer", call_id=leg.call_id, reason=str(exc))
            self._hang_up(leg, "bad SDP answer")
            return
        self._start(leg, session, now)

    def _on_reinvite(self, leg: Leg, offer: bytes | None) -> None:
        if leg.media is None:
            self._ua.append(RejectReinvite(leg.key, 491))
            return
        if not offer:
            # An offerless re-INVITE would need the answer from its ACK; refresh-style only.
            self._ua.append(
                RejectReinvite(leg.key, 488, "Re-INVITE without SDP not supported")
            )
            return
        leg.sdp_version += 1
        try:
            sdp, session = leg.answer(offer)
        except SdpError as exc:
            leg.sdp_version -= 1
            self._ua.append(RejectReinvite(leg.key, exc.status, reason_phrase(str(exc))))
            return
        leg.media = negotiated(session, leg.srtp)
        self._media.append(UpdateMedia(leg.key, leg.media))
        self._ua.append(AnswerReinvite(leg.key, sdp))
        log.info(
            "participant.hold" if session.on_hold else "participant.resume",
            room=leg.room,
            participant=leg.participant_id,
        )

    # --- media and admission ----------------------------------------------------------------

    def _start(self, leg: Leg, session: AudioSession, now: float) -> None:
        """Media is up: join the room, or wait in the lobby for a code, or refuse politely."""
        leg.media = negotiated(session, leg.srtp)
        plan = leg.plan
        joins = plan.admission is Admission.JOIN
        room = self._room_to_join(plan.room) if joins else None
        self._media.append(
            AddParticipant(
                leg.key,
                Identity(leg.participant_id, leg.caller, leg.display_name, leg.peer_host),
                leg.media,
                leg.controls,
                room.name if room is not None and not room.full else None,
                now,
            )
        )
        if joins:
            self._join(leg, plan.room, now, moved=False)
            return
        if plan.admission is Admission.CONFIRM:
            timeout = float(self.config.dialout.confirm_timeout_s)
            self._dialogue(leg, PoundToJoin(plan.room, timeout), now)
        elif plan.admission is Admission.ANNOUNCE:
            assert plan.announcement is not None
            self._play(leg, plan.announcement.prompt, replace_room_audio=True)
            self._hang_up_after_prompts(leg, plan.announcement.reason)
            log.info("call.announced", prompt=plan.announcement.prompt, caller=leg.caller)
        elif plan.admission is Admission.REFUSE:
            self._play(leg, "not_allowed", replace_room_audio=True)
            self._hang_up_after_prompts(leg, "caller not allowed")
            log.info("call.refused", room=plan.room, caller=leg.caller)
        else:
            assert plan.code_for is not None
            rooms = self.config.rooms
            self._dialogue(leg, CodeEntry(plan.code_for, rooms.code_attempts,
                                          rooms.code_timeout_s), now)

    def _dialogue(self, leg: Leg, entry: CodeEntry | PoundToJoin, now: float) -> None:
        leg.code_entry = entry
        self.attention.add(leg.key)
        self._ivr_actions(leg, entry.start(now), now)

    def _room_to_join(self, name: str) -> RoomState:
        room, created = self.rooms.open(name)
        if created:
            log.info("room.created", room=name)
        return room

    def _join(self, leg: Leg, name: str, now: float, moved: bool = True) -> None:
        room = self._room_to_join(name)
        if room.full:
            self._play(leg, "conference_locked", replace_room_audio=True)
            self._hang_up_after_prompts(leg, "room full")
            return
        if moved:
            self._media.append(MoveParticipant(leg.key, name))
        others = list(room.members)
        room.members.append(leg.key)
        leg.room = name
        leg.joined_at = self.wall_clock()
        leg.keypad = Keypad(self.bindings)
        announce = self.config.announcements
        if not others and announce.only_participant:
            self._play(leg, "only_participant")
            leg.alone_prompt = leg.prompt_sequence
        self._stop_alone_prompts(others)
        self._chime(others, "join")
        log.info(
            "participant.joined",
            room=name,
            participant=leg.participant_id,
            caller=leg.caller,
            codec=leg.media.codec if leg.media else "",
            count=len(room.members),
        )
        self._events.append(
            ParticipantJoined(self.wall_clock(), name, leg.participant_id, leg.caller)
        )

    def _stop_alone_prompts(self, members: list[str]) -> None:
        """Someone arrived: a member still hearing "you are the only participant" stops
        hearing it (it would play over the newcomer's first words)."""
        for key in members:
            member = self.legs.get(key)
            if member is not None and member.alone_prompt is not None:
                member.alone_prompt = None
                if member.prompts_busy:
                    self._clear_prompts(member)

    def _chime(self, listeners: list[str], prompt: str) -> None:
        """Join/leave tones for small rooms, never queued behind another prompt: a burst of
        arrivals gives one chime, not a queue of them."""
        announce = self.config.announcements
        if not announce.join_leave_tones or len(listeners) >= announce.tones_max_room:
            return
        for key in listeners:
            listener = self.legs.get(key)
            if listener is not None and not listener.prompts_busy:
                self._play(listener, prompt)

    def _play(self, leg: Leg, prompt: str, replace_room_audio: bool = False) -> None:
        leg.prompt_sequence += 1
        leg.prompts_busy = True
        self._media.append(PlayPrompt(leg.key, prompt, replace_room_audio, leg.prompt_sequence))

    def _clear_prompts(self, leg: Leg) -> None:
        leg.prompt_sequence += 1
        leg.prompts_busy = False
        self._media.append(ClearPrompts(leg.key, leg.prompt_sequence))

    def _ivr_actions(self, leg: Leg, actions: list[IvrAction], now: float) -> None:
        for action in actions:
            if isinstance(action, WrongCode):
                if self._count_wrong_code(leg, now):
                    return  # its source is locked out: the dialogue is over
            elif isinstance(action, Play):
                self._play(leg, action.prompt, replace_room_audio=True)
            elif isinstance(action, Admit):
                leg.code_entry = None
                self._clear_prompts(leg)
                self._join(leg, action.room, now)
                if leg.dialout is not None and leg.room is not None:  # else: the room was full
                    self._settle(leg.dialout, DialStatus.ANSWERED, leg.participant_id)
            elif isinstance(action, Refuse):
                if leg.dialout is not None:
                    self._settle(leg.dialout, DialStatus.UNANSWERED, action.reason)
                self._hang_up_after_prompts(leg, action.reason)
                log.info("call.refused", room=leg.plan.room, caller=leg.caller,
                         reason=action.reason)

    def _count_wrong_code(self, leg: Leg, now: float) -> bool:
        """Count a wrong code; True when its source is now locked out, and then every call of
        that source still entering a code is told so and hung up."""
        source = leg.peer_host
        crossed = self.guard.wrong(source, leg.plan.room, now)
        for lockout in crossed:
            self._announce_lockout(lockout, now)
        if not self.guard.locked(source, now):
            return False
        for other in list(self.legs.values()):
            entry = other.code_entry
            if other.peer_host == source and isinstance(entry, CodeEntry) and not entry.done:
                other.code_entry = None
                self._clear_prompts(other)
                self._play(other, "too_many_attempts", replace_room_audio=True)
                self._hang_up_after_prompts(other, "code lockout")
        return True

    def _announce_lockout(self, lockout: Lockout, now: float) -> None:
        until = self.wall_clock() + (lockout.until - now)
        log.warning(
            "security.code_lockout",
            scope=lockout.scope,
            source=lockout.source,
            room=lockout.room,
            attempts=lockout.attempts,
        )
        self._events.append(
            CodeLockout(self.wall_clock(), lockout.room, "", lockout.scope, lockout.source,
                        lockout.attempts, until)
        )

    def _on_digit(self, leg: Leg, digit: str, method: str, now: float) -> None:
        self._events.append(
            DtmfReceived(self.wall_clock(), leg.room or "(lobby)", leg.participant_id, digit,
                         method)
        )
        if leg.code_entry is not None:
            self._clear_prompts(leg)  # barge-in: a key press stops the prompt playing
            self._ivr_actions(leg, leg.code_entry.press(digit, now), now)
            return
        if leg.keypad is None or not leg.dtmf_enabled or leg.hangup_reason:
            return
        action = leg.keypad.press(digit, now)
        if action is MenuAction.TOGGLE_MUTE:
            self._set_muted(leg, not leg.controls.muted, by="keypad")
            self._play(leg, "muted" if leg.controls.muted else "unmuted")
        elif action in (MenuAction.VOLUME_UP, MenuAction.VOLUME_DOWN):
            step = VOLUME_STEP_DB if action is MenuAction.VOLUME_UP else -VOLUME_STEP_DB
            volume = max(-VOLUME_LIMIT_DB, min(VOLUME_LIMIT_DB, leg.controls.volume_db + step))
            self._set_controls(leg, volume_db=volume)
            self._play(leg, action.value)
        elif action is MenuAction.LEAVE:
            self._play(leg, "goodbye", replace_room_audio=True)
            self._hang_up_after_prompts(leg, "left by keypad")
        elif action is MenuAction.TOGGLE_RECORDING and leg.room is not None:
            self._keypad_recording(leg, leg.room)

    def _hang_up_after_prompts(self, leg: Leg, reason: str) -> None:
        leg.hangup_reason = reason
        self.attention.add(leg.key)

    def _set_controls(self, leg: Leg, **changes: object) -> None:
        """The one way a participant's switches change: the media side hears of it at once."""
        leg.controls = replace(leg.controls, **changes)  # type: ignore[arg-type]
        if leg.media is not None:
            self._media.append(UpdateControls(leg.key, leg.controls))

    def _set_muted(self, leg: Leg, muted: bool, by: str) -> None:
        if leg.controls.muted == muted:
            return
        self._set_controls(leg, muted=muted)
        self._events.append(
            ParticipantMuted(self.wall_clock(), leg.room or "", leg.participant_id, muted, by)
        )

    # --- media reports ----------------------------------------------------------------------

    def handle_media_report(self, report: MediaReport, now: float) -> None:
        if isinstance(report, RecordingEnded):
            self._recording_ended(report)
            return
        leg = self.legs.get(report.leg)
        if leg is None:
            return  # the call ended meanwhile
        if isinstance(report, DigitPressed):
            self._on_digit(leg, report.digit, report.method, now)
        elif isinstance(report, TalkingChanged):
            leg.talking = report.talking
            if leg.room is not None:
                self._events.append(
                    ParticipantTalking(self.wall_clock(), leg.room, leg.participant_id,
                                       report.talking)
                )
        elif isinstance(report, PromptsIdle):
            if report.sequence == leg.prompt_sequence:
                leg.prompts_busy = False
            if leg.alone_prompt is not None and report.sequence >= leg.alone_prompt:
                leg.alone_prompt = None
        elif isinstance(report, ParticipantLost):
            self._hang_up(leg, report.reason)

    # --- timers -----------------------------------------------------------------------------

    def _at(self, deadline: float, leg: Leg, due: Due) -> None:
        self._timer_order += 1
        heapq.heappush(self._timers, _Timer(deadline, self._timer_order, leg.key, due))

    def handle_timer(self, now: float) -> None:
        """Run what is due: answers after the answer delay, ring timeouts, maximum call
        durations, IVR timeouts, and hang-ups whose prompts have played."""
        while self._timers and self._timers[0].deadline <= now:
            timer = heapq.heappop(self._timers)
            leg = self.legs.get(timer.leg)
            if leg is not None:
                self._on_timer(leg, timer.due, now)
        for key in list(self.attention):
            leg = self.legs.get(key)
            if leg is None or (leg.code_entry is None and not leg.hangup_reason):
                self.attention.discard(key)
                continue
            if leg.code_entry is not None:
                self._ivr_actions(leg, leg.code_entry.tick(now), now)
            if leg.hangup_reason and not leg.prompts_busy:
                self._hang_up(leg, leg.hangup_reason)

    def _on_timer(self, leg: Leg, due: Due, now: float) -> None:
        if due is Due.ANSWER and leg.pending_answer is not None:
            self._answer(leg, now)
        elif due is Due.RING_TIMEOUT:
            dialout = leg.dialout
            if dialout is not None and dialout.answered_at is None and self._settle(
                dialout, DialStatus.UNANSWERED, "ring timeout"
            ):
                self._ua.append(Cancel(leg.key))
        elif due is Due.MAX_DURATION:
            self._hang_up(leg, "maximum call duration")
        elif due is Due.NO_ANSWER and leg.key in self.ringing:
            then = leg.plan.unanswered.then if leg.plan.unanswered else None
            if isinstance(then, Reroute):  # answered into another room (voice mail)
                leg.plan = Plan(Admission.JOIN, then.room)
                self.answer_ringing(leg, now)
                log.info("call.no_answer", call_id=leg.call_id, room=then.room)
            elif then is not None:
                self.ringing.discard(leg.key)
                self._ua.append(Reject(leg.key, then.status, then.reason, then.headers))
                self._end(leg, "no answer")

    # --- dial-out ---------------------------------------------------------------------------

    def dial(self, request: DialRequest, now: float) -> None:
        """Call `request.dest` into `request.room`: INVITE with our offer, CANCEL after the ring
        timeout, "press # to join" when `confirm`, BYE after the maximum call duration."""
        dialout = DialOut(
            request.ref, request.room, request.dest, request.caller_id, request.confirm,
            started_at=self.wall_clock(), max_duration_s=request.max_duration_s,
        )
        call_id = new_call_id(self.config.advertise_address)
        key, local_tag = f"{call_id}/out", new_tag()
        admission_ = Admission.CONFIRM if request.confirm else Admission.JOIN
        leg = self._open_leg(
            key, local_tag, call_id, request.room, "", request.peer.host,
            Plan(admission_, request.room), request.dest, dialout.started_at, dialout,
            request.peer.transport,
        )
        if leg is None:
            dialout.settle(DialStatus.FAILED, "no RTP port free")
            self._announce_settled(dialout, "")
            self._publish_ended(dialout)
            return
        self.legs[key] = leg
        self._ua.append(
            PlaceCall(
                call_id, local_tag, request.target, request.peer, request.room, request.caller_id,
                leg.offer(), request.headers, request.credentials, request.alternatives,
            )
        )
        self._at(now + float(self.config.dialout.ring_timeout_s), leg, Due.RING_TIMEOUT)
        log.info("dialout.started", ref=dialout.ref, room=dialout.room, dest=dialout.dest)

    def _on_dial_answered(self, leg: Leg, answer: bytes | None, now: float) -> None:
        dialout = leg.dialout
        if dialout is None:
            return
        dialout.answered_at = leg.answered_at = self.wall_clock()
        dialout.sip_status = 200
        if dialout.status.settled:  # a 200 that crossed our CANCEL: it is over already
            self._hang_up(leg, "answered after cancel")
            return
        try:
            session = leg.take_answer(answer, "the 200")
        except SdpError as exc:
            self._settle(dialout, DialStatus.FAILED, str(exc))
            self._hang_up(leg, "bad SDP answer")
            return
        limit = float(self.config.dialout.max_call_s)
        if dialout.max_duration_s is not None:
            limit = min(limit, dialout.max_duration_s)
        self._at(now + limit, leg, Due.MAX_DURATION)
        self._start(leg, session, now)
        if not dialout.confirm and leg.room is not None:
            self._settle(dialout, DialStatus.ANSWERED, leg.participant_id)

    def cancel_dial(self, ref: str) -> bool:
        """Stop a call out not in its room yet: CANCEL while it rings, BYE while the callee
        is asked to press #; False when there is no such call (any more)."""
        leg = next(
            (g for g in self.legs.values() if g.dialout is not None and g.dialout.ref == ref),
            None,
        )
        if leg is None or leg.dialout is None:
            return False
        if not self._settle(leg.dialout, DialStatus.UNANSWERED, "cancelled"):
            return False
        if leg.dialout.answered_at is None:
            self._ua.append(Cancel(leg.key))
        else:
            self._hang_up(leg, "cancelled")
        return True

    def _settle(self, dialout: DialOut, status: DialStatus, detail: str = "") -> bool:
        participant = detail if status is DialStatus.ANSWERED else ""
        if not dialout.settle(status, "" if participant else detail):
            return False
        self._announce_settled(dialout, participant)
        return True

    def _announce_settled(self, dialout: DialOut, participant: str) -> None:
        log.info("dialout.settled", ref=dialout.ref, dest=dialout.dest, status=str(dialout.status))
        self._events.append(settled_event(dialout, participant, self.wall_clock()))

    def _publish_ended(self, dialout: DialOut) -> None:
        self._events.append(ended_event(dialout, self.wall_clock()))

    # --- ending calls -----------------------------------------------------------------------

    def _hang_up(self, leg: Leg, reason: str) -> None:
        """End a call from the bridge's side (BYE) and free its media."""
        self._ua.append(HangUp(leg.key, reason))
        self._end(leg, reason)

    def _end(self, leg: Leg, reason: str) -> None:
        if self.legs.pop(leg.key, None) is None:
            return
        self.attention.discard(leg.key)
        self.ringing.discard(leg.key)
        self._media.append(RemoveParticipant(leg.key))
        dialout = leg.dialout
        if dialout is not None:
            if not dialout.status.settled:
                status = DialStatus.UNANSWERED if dialout.answered_at else DialStatus.FAILED
                self._settle(dialout, status, reason)
            self._leave(leg, reason)
            self._publish_ended(dialout)
            return
        self._events.append(
            CallFinished(
                self.wall_clock(),
                leg.room or leg.plan.room or leg.dialled,
                leg.participant_id,  # the participant id the call has, or would have had
                leg.call_id,
                leg.caller,
                leg.started_at,
                leg.answered_at,
                200 if leg.answered_at is not None else 487,
                reason,
            )
        )
        self._leave(leg, reason)

    def _leave(self, leg: Leg, reason: str) -> None:
        room = self.rooms.get(leg.room) if leg.room is not None else None
        if room is None or leg.key not in room.members:
            return
        room.members.remove(leg.key)
        self._chime(room.members, "leave")
        log.info(
            "participant.left",
            room=room.name,
            participant=leg.participant_id,
            reason=reason,
            count=len(room.members),
        )
        self._events.append(
            ParticipantLeft(self.wall_clock(), room.name, leg.participant_id, reason)
        )
        if self.rooms.close_if_done(room.name):
            log.info("room.closed", room=room.name)

    # --- control commands (from the control plane, through the server's control port) ------

    def define_room(self, definition: RoomDefinition) -> None:
        self.rooms.define(definition)

    def forget_room(self, name: str, reason: str) -> None:
        """A managed room is over: hang everyone up and drop its rules."""
        self.hang_up_room(name, reason)
        self.rooms.forget(name)

    def set_mixing(self, name: str, mixing: bool) -> None:
        room = self.rooms.get(name)
        if room is not None and room.mixing != mixing:
            room.mixing = mixing
            self._media.append(SetRoomMixing(name, mixing))

    def members(self, name: str) -> list[Leg]:
        room = self.rooms.get(name)
        return [self.legs[key] for key in room.members] if room is not None else []

    def find(self, name: str, participant_id: str) -> Leg | None:
        return next((leg for leg in self.members(name) if leg.participant_id == participant_id),
                    None)

    def ringing_legs(self, name: str) -> list[Leg]:
        return [leg for key in self.ringing if (leg := self.legs[key]).plan.room == name]

    def start_recording(self, name: str, path: str, fmt: str) -> bool:
        """Record the room's mix to `path`; False when it has no members or records already."""
        if not self.members(name) or name in self.recordings:
            return False
        self.recordings[name] = path
        self._media.append(StartRecording(name, path, fmt))
        self._events.append(RecordingStarted(self.wall_clock(), name, "", path, fmt))
        return True

    def stop_recording(self, name: str) -> bool:
        if name not in self.recordings:
            return False
        self._media.append(StopRecording(name))
        return True

    def _keypad_recording(self, leg: Leg, room: str) -> None:
        """The recording key: start or stop the room's recording, a beep to say it worked."""
        if self.config.keypad.recording_by == "listed":
            definition = self.rooms.definitions.get(room)
            if definition is None or leg.caller not in definition.callers:
                self._play(leg, "not_allowed")
                return
        if room in self.recordings:
            self.stop_recording(room)
        else:
            settings = self.config.recording
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.wall_clock()))
            path = os.path.abspath(os.path.join(settings.dir, f"{room}-{stamp}.{settings.format}"))
            self.start_recording(room, path, settings.format)
        self._play(leg, "beep")

    def _recording_ended(self, report: RecordingEnded) -> None:
        if self.recordings.get(report.room) == report.path:
            del self.recordings[report.room]
        self._events.append(
            RecordingStopped(self.wall_clock(), report.room, "", report.path, report.duration_s,
                             report.size_bytes, report.reason)
        )

    def play_to_room(self, name: str, prompt: str) -> None:
        for leg in self.members(name):
            self._play(leg, prompt)

    def play_to_participant(self, name: str, participant_id: str, prompt: str) -> bool:
        leg = self.find(name, participant_id)
        if leg is None:
            return False
        self._play(leg, prompt)
        return True

    def set_muted(self, leg: Leg, muted: bool, by: str) -> None:
        self._set_muted(leg, muted, by)

    def set_option(self, leg: Leg, option: str, value: object) -> None:
        """Set deaf, held, dtmf_enabled or volume_db (muted goes through `set_muted`)."""
        if option not in PARTICIPANT_OPTIONS:
            raise ValueError(f"unknown participant option {option!r}")
        current = leg.dtmf_enabled if option == "dtmf_enabled" else getattr(leg.controls, option)
        if current == value:
            return
        if option == "dtmf_enabled":
            leg.dtmf_enabled = bool(value)
        else:
            self._set_controls(leg, **{option: value})
        self._events.append(
            ParticipantChanged(self.wall_clock(), leg.room or "", leg.participant_id, option,
                               value)
        )

    def eject(self, leg: Leg, reason: str = "ejected") -> None:
        self._hang_up(leg, reason)

    def transfer(self, leg: Leg, target: URI) -> None:
        """Blind transfer: REFER the participant's phone to `target`; once it is connected
        there the participant's call with the bridge ends."""
        log.info("participant.transfer", room=leg.room, participant=leg.participant_id)
        self._ua.append(Transfer(leg.key, target))

    def hang_up_room(self, name: str, reason: str) -> None:
        for leg in self.members(name):
            self._hang_up(leg, reason)

    def hang_up_all(self, reason: str) -> None:
        for leg in list(self.legs.values()):
            self._hang_up(leg, reason)

    def answer_ringing(self, leg: Leg, now: float) -> bool:
        """Answer a call left ringing for the control plane; False when it is not ringing."""
        if leg.key not in self.ringing:
            return False
        self.ringing.discard(leg.key)
        self._answer(leg, now)
        return True

    def reject_ringing(self, leg: Leg, status: int = 603) -> bool:
        """Turn away a call left ringing (603 Decline); False when it is not ringing."""
        if leg.key not in self.ringing:
            return False
        self._ua.append(Reject(leg.key, status, "Declined"))
        self._end(leg, "declined")
        return True

