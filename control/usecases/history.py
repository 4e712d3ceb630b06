"""Calls out by reference, and their history: what Hoiio's voice/query_status and
voice/get_history report. A call still known to the running plane is read from its live
record (so one being placed or talking shows as such); a finished one, also after a
restart, from its call-detail record, which keeps the reference, the `tag` and the outcome."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from control.callout import UNSETTLED, CallOut
from control.plane import ControlPlane
from control.store.records import CallRecord, Tenant
from control.usecases.errors import NotFound


@dataclass(frozen=True)
class Transaction:
    """One call out: `outcome` is None until known (answered, unanswered, busy, failed);
    `ended` once it is over; `minutes` talked, rounded up (0 when never answered)."""

    ref: str
    tag: str
    dest: str
    room: str
    outcome: str | None
    started_at: datetime | None
    ended: bool
    minutes: int


def minutes(answered_at: float | None, ended_at: float | None) -> int:
    if answered_at is None or ended_at is None:
        return 0
    return max(1, math.ceil((ended_at - answered_at) / 60))


def live(call: CallOut) -> Transaction:
    started = datetime.fromtimestamp(call.started_at, UTC) if call.started_at else None
    return Transaction(
        ref=call.ref,
        tag=call.tag,
        dest=call.dest,
        room=call.room,
        outcome=None if call.status in UNSETTLED else call.status,
        started_at=started,
        ended=call.ended_at is not None,
        minutes=minutes(call.answered_at, call.ended_at),
    )


def recorded(record: CallRecord) -> Transaction:
    def epoch(moment: datetime | None) -> float | None:
        return moment.timestamp() if moment else None

    return Transaction(
        ref=record.call_id,
        tag=record.tag or "",
        dest=record.callee,
        room=record.room,
        outcome=(record.end_reason or "failed").split(" ", 1)[0],
        started_at=record.started_at,
        ended=record.ended_at is not None,
        minutes=minutes(epoch(record.answered_at), epoch(record.ended_at)),
    )


async def status(plane: ControlPlane, tenant: Tenant, ref: str) -> Transaction:
    """The tenant's call out `ref`; NotFound for an unknown one or another tenant's."""
    call = plane.dialouts.records.get(ref)
    if call is not None and call.tenant_id == tenant.id:
        return live(call)
    record = await plane.store.calls.find_call(tenant.id, ref, "out")
    if record is None:
        raise NotFound(f"txn_ref {ref!r}")
    return recorded(record)


async def history(
    plane: ControlPlane,
    tenant: Tenant,
    since: datetime | None,
    until: datetime | None,
    offset: int,
    limit: int,
) -> tuple[list[Transaction], int]:
    """One page of the tenant's finished calls out started in [since, until), oldest first,
    and how many there are in all."""
    records, total = await plane.store.calls.list_calls(
        tenant.id, offset, limit, direction="out", since=since, until=until
    )
    return [recorded(r) for r in records], total
