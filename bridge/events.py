"""The bridge's internal event bus: what happened to rooms and participants, for the control plane.

Events are frozen dataclasses stamped with wall-clock time (epoch seconds, for people and APIs).
Publishing is synchronous fan-out; a failing subscriber is logged and never breaks the caller,
which is usually the media or SIP path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import structlog

log = structlog.get_logger()


@dataclass(frozen=True)
class BridgeEvent:
    time: float
    room: str
    participant: str


@dataclass(frozen=True)
class ParticipantJoined(BridgeEvent):
    caller: str


@dataclass(frozen=True)
class ParticipantLeft(BridgeEvent):
    reason: str


@dataclass(frozen=True)
class ParticipantMuted(BridgeEvent):
    muted: bool
    by: str  # "keypad" or "api"


@dataclass(frozen=True)
class DtmfReceived(BridgeEvent):
    digit: str
    method: str  # "rfc4733", "info" or "inband"


@dataclass(frozen=True)
class ParticipantTalking(BridgeEvent):
    talking: bool


@dataclass(frozen=True)
class ParticipantChanged(BridgeEvent):
    """An option set through the API (deaf, held, dtmf_enabled, volume_db): its new value."""

    option: str
    value: object


@dataclass(frozen=True)
class CallAlerting(BridgeEvent):
    """A call arrived and was accepted for a room (before the answer). `participant` is the id it
    will have in the room; `manual`: it rings until the control plane answers or rejects it."""

    call_id: str
    caller: str
    manual: bool


@dataclass(frozen=True)
class CallFinished(BridgeEvent):
    """Every call that reached the bridge, once, when it is over: the call-detail record.

    `participant` is empty for calls refused before joining a room; `answered_at` is None for
    calls never answered; `status` is the final SIP status we sent (200 when answered)."""

    call_id: str
    caller: str
    started_at: float
    answered_at: float | None
    status: int
    reason: str


@dataclass(frozen=True)
class DialOutRinging(BridgeEvent):
    """An outgoing call got a provisional response: the callee's phone rings."""

    ref: str


@dataclass(frozen=True)
class DialOutSettled(BridgeEvent):
    """An outgoing call's outcome is known (answered, unanswered, busy, failed): the next number
    of a list may be dialled. `participant` is the call's participant id once answered."""

    ref: str
    status: str
    sip_status: int | None = None  # the final response that decided it, when one did
    reason: str = ""
    answered_at: float | None = None


@dataclass(frozen=True)
class DialOutEnded(BridgeEvent):
    """An outgoing call is over: what the notification and the call-detail record carry."""

    ref: str
    dest: str
    caller_id: str
    status: str
    sip_status: int | None
    reason: str
    started_at: float
    answered_at: float | None
    ended_at: float


@dataclass(frozen=True)
class CodeLockout(BridgeEvent):
    """Room-code guessing crossed a limit (`bridge.conference.lockout`): `scope` "source" (that
    address is refused until `until`, epoch seconds) or "room" (an alarm for `room`)."""

    scope: str
    source: str
    attempts: int
    until: float


Subscriber = Callable[[BridgeEvent], None]


@dataclass(frozen=True)
class RecordingStarted(BridgeEvent):
    path: str
    format: str


@dataclass(frozen=True)
class RecordingStopped(BridgeEvent):
    """`reason`: "stopped", "room_closed", "media_worker_died" or "error: ..." (disk)."""

    path: str
    duration_s: float
    size_bytes: int
    reason: str


class EventBus:
    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add a subscriber; returns the function that removes it."""
        self._subscribers.append(subscriber)
        return lambda: self._subscribers.remove(subscriber)

    def publish(self, event: BridgeEvent) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:
                log.exception("events.subscriber_failed", event=type(event).__name__)
