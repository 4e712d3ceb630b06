"""What the conference core asks of the SIP user agent: one frozen record per action, naming
the call leg by its key, and `carry_out`, which turns one into the `UserAgent` call (the
server glue and the core's tests both use it; the UA is sans-I/O too)."""

from __future__ import annotations

from dataclasses import dataclass

from sipmessage import URI

from bridge.sip.auth import Credentials
from bridge.sip.transaction import Peer
from bridge.sip.useragent import UserAgent


class UaAction:
    """Base of the core's SIP actions."""


@dataclass(frozen=True)
class Ringing(UaAction):
    leg: str


@dataclass(frozen=True)
class Answer(UaAction):
    leg: str
    sdp: bytes


@dataclass(frozen=True)
class Reject(UaAction):
    leg: str
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class AnswerReinvite(UaAction):
    leg: str
    sdp: bytes


@dataclass(frozen=True)
class RejectReinvite(UaAction):
    leg: str
    status: int
    reason: str | None = None


@dataclass(frozen=True)
class HangUp(UaAction):
    """BYE once answered; before that, what fits the call's state (480, or CANCEL for ours)."""

    leg: str
    reason: str


@dataclass(frozen=True)
class Cancel(UaAction):
    leg: str


@dataclass(frozen=True)
class Transfer(UaAction):
    """Blind transfer (REFER): ask the participant's phone to call `target`."""

    leg: str
    target: URI


@dataclass(frozen=True)
class AcceptTransfer(UaAction):
    """202 to the peer's REFER; `status` is the outcome reported at once by NOTIFY."""

    leg: str
    status: int = 200


@dataclass(frozen=True)
class RejectTransfer(UaAction):
    leg: str
    status: int
    reason: str


@dataclass(frozen=True)
class PlaceCall(UaAction):
    """INVITE `target` through `peer` with our Call-ID and From tag; the UA names the leg
    `<call_id>/out`."""

    call_id: str
    local_tag: str
    target: URI
    peer: Peer
    room: str
    caller: str
    sdp: bytes
    headers: tuple[tuple[str, str], ...] = ()
    credentials: Credentials | None = None
    alternatives: tuple[Peer, ...] = ()  # where to try next on 503 or no answer


def carry_out(ua: UserAgent, action: UaAction, now: float) -> None:
    """Do what `action` asks of `ua`; an action for a call SIP already ended does nothing."""
    if isinstance(action, PlaceCall):
        ua.invite(
            target=action.target,
            peer=action.peer,
            room=action.room,
            caller=action.caller,
            sdp=action.sdp,
            now=now,
            headers=action.headers,
            credentials=action.credentials,
            call_id=action.call_id,
            local_tag=action.local_tag,
            alternatives=action.alternatives,
        )
        return
    call = ua.calls.get(action.leg)  # type: ignore[attr-defined]
    if call is None:
        return
    if isinstance(action, Ringing):
        ua.ringing(call, now)
    elif isinstance(action, Answer):
        ua.answer(call, action.sdp, now)
    elif isinstance(action, Reject):
        ua.reject(call, action.status, now, reason=action.reason, headers=action.headers)
    elif isinstance(action, AnswerReinvite):
        ua.answer_reinvite(call, action.sdp, now)
    elif isinstance(action, RejectReinvite):
        ua.reject_reinvite(call, action.status, now, reason=action.reason)
    elif isinstance(action, HangUp):
        ua.hangup(call, now, reason=action.reason)
    elif isinstance(action, Cancel):
        ua.cancel(call, now)
    elif isinstance(action, Transfer):
        ua.refer(call, action.target, now)
    elif isinstance(action, AcceptTransfer):
        ua.accept_transfer(call, now)
        ua.report_transfer(call, action.status, now)
    elif isinstance(action, RejectTransfer):
        ua.reject_transfer(call, action.status, now, reason=action.reason)
