"""Calls the conference places (dial-out): one record per attempt, its outcome as the Hoiio
document names them, and the SIP status that decided it."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from bridge.events import DialOutEnded, DialOutRinging, DialOutSettled


class DialStatus(enum.StrEnum):
    DIALLING = "dialling"
    RINGING = "ringing"
    ANSWERED = "answered"  # answered (and confirmed with # when asked): in the room
    UNANSWERED = "unanswered"  # ring timeout, no answer, or no # within the timeout
    BUSY = "busy"
    FAILED = "failed"

    @property
    def settled(self) -> bool:
        return self not in (DialStatus.DIALLING, DialStatus.RINGING)


BUSY_CODES = frozenset({486, 600})
UNANSWERED_CODES = frozenset({408, 480, 487})


def outcome_of(sip_status: int) -> DialStatus:
    """The outcome of an INVITE that ended with `sip_status` and no dialog."""
    if sip_status in BUSY_CODES:
        return DialStatus.BUSY
    if sip_status in UNANSWERED_CODES:
        return DialStatus.UNANSWERED
    return DialStatus.FAILED


@dataclass(eq=False)
class DialOut:
    """One outgoing call into a room. Times are wall clock (epoch seconds)."""

    ref: str
    room: str
    dest: str  # as asked: +E.164 or a SIP URI
    caller_id: str
    confirm: bool
    started_at: float
    owner: str | None = None  # the application that asked, for the control plane
    tag: str = ""
    call_key: str = ""
    status: DialStatus = DialStatus.DIALLING
    sip_status: int | None = None
    reason: str = ""
    answered_at: float | None = None
    ended_at: float | None = None
    max_duration_s: float | None = None  # the request's own limit (None: max_call_s)

    def settle(self, status: DialStatus, reason: str = "") -> bool:
        """Fix the outcome once; True when this call fixed it."""
        if self.status.settled:
            return False
        self.status, self.reason = status, reason or self.reason
        return True

    @property
    def duration_s(self) -> float:
        if self.answered_at is None or self.ended_at is None:
            return 0.0
        return max(0.0, self.ended_at - self.answered_at)


def settled_event(dialout: DialOut, participant: str, now: float) -> DialOutSettled:
    """The outcome is known: the next number of a list may be dialled."""
    return DialOutSettled(
        now, dialout.room, participant, dialout.ref, str(dialout.status), dialout.sip_status,
        dialout.reason, dialout.answered_at,
    )


def ringing_event(dialout: DialOut, now: float) -> DialOutRinging:
    return DialOutRinging(now, dialout.room, "", dialout.ref)


def ended_event(dialout: DialOut, now: float) -> DialOutEnded:
    """The call is over: what the notification and the call-detail record carry."""
    dialout.ended_at = now
    return DialOutEnded(
        now, dialout.room, "", dialout.ref, dialout.dest, dialout.caller_id,
        str(dialout.status), dialout.sip_status, dialout.reason, dialout.started_at,
        dialout.answered_at, now,
    )
