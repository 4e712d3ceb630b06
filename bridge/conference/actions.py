"""What the conference core asks of the SIP user agent: one frozen record per action, naming
the call leg by its key. The server glue carries them out in order (`UserAgent` methods)."""

from __future__ import annotations

from dataclasses import dataclass

from sipmessage import URI

from bridge.sip.auth import Credentials
from bridge.sip.transaction import Peer


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
