"""The control plane's own record of one call out: who asked (tenant, tag, where to notify),
what the bridge reported (status, SIP status, times), and the shapes that leave the plane when
it ends (the `call.ended` event, the notify_url body). The bridge only ever sees a frozen
`DialRequest`; its events are folded into this record by reference."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from control.events import iso

DIALLING = "dialling"
RINGING = "ringing"
ANSWERED = "answered"
FAILED = "failed"
UNSETTLED = (DIALLING, RINGING)

NotifyFormat = Callable[[dict[str, Any]], dict[str, str]]


@dataclass(eq=False)
class CallOut:
    """One call asked for through an API. Times are wall clock (epoch seconds), as the bridge
    reports them; `started_at` is 0 while the call waits in its list."""

    ref: str
    tenant_id: str
    room: str
    dest: str  # as asked: +E.164 or a SIP URI
    caller_id: str
    confirm: bool
    tag: str = ""
    notify_url: str | None = None
    notify_format: NotifyFormat | None = None
    status: str = DIALLING
    sip_status: int | None = None
    reason: str = ""
    participant: str = ""  # its participant id once answered
    started_at: float = 0.0
    answered_at: float | None = None
    ended_at: float | None = None
    max_duration_s: int | None = None  # the request's own limit (None: max_call_s)

    @property
    def settled(self) -> bool:
        return self.status not in UNSETTLED

    @property
    def duration_s(self) -> float:
        if self.answered_at is None or self.ended_at is None:
            return 0.0
        return max(0.0, self.ended_at - self.answered_at)


def ended_payload(call: CallOut, conference_id: str | None) -> dict[str, Any]:
    """The `call.ended` event of a call out (webhooks and live streams)."""
    return {
        "conference": call.room,
        "time": iso(call.ended_at),
        "direction": "out",
        "txn_ref": call.ref,
        "dest": call.dest,
        "caller_id": call.caller_id,
        "status": call.status,
        "sip_status": call.sip_status,
        "reason": call.reason,
        "tag": call.tag,
        "started_at": iso(call.started_at),
        "answered_at": iso(call.answered_at),
        "ended_at": iso(call.ended_at),
        "conference_id": conference_id,
    }


def notification(call: CallOut, currency: str) -> dict[str, Any]:
    """What notify_url receives when the call ends: the Hoiio fields, rates at zero."""
    minutes = 0
    if call.answered_at is not None and call.ended_at is not None:
        minutes = max(1, math.ceil((call.ended_at - call.answered_at) / 60))
    return {
        "txn_ref": call.ref,
        "dest": call.dest,
        "call_status": call.status,
        "tag": call.tag,
        "date": iso(call.started_at),
        "answered_at": iso(call.answered_at),
        "ended_at": iso(call.ended_at),
        "duration": minutes,
        "rate": 0.0,
        "debit": 0.0,
        "currency": currency,
        "sip_status": call.sip_status,
        "reason": call.reason,
        "room": call.room,
    }
