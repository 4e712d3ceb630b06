"""Call-detail records: one row per call, incoming (from the bridge's `CallFinished`) or
outgoing (from the plane's own `CallOut` record), written by the plane's event pump."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from bridge.events import CallFinished
from control.callout import CallOut
from control.store import Store


@dataclass(frozen=True)
class CallRecordFields:
    """One call-detail record as the events give it (times in epoch seconds)."""

    tenant_id: str | None
    conference_id: str | None
    call_id: str
    room: str
    direction: str
    caller: str
    callee: str
    started_at: float
    answered_at: float | None
    ended_at: float
    reason: str
    tag: str | None = None  # a call out's client reference (Hoiio's `tag`)


def incoming(
    tenant_id: str | None, conference_id: str | None, call: CallFinished
) -> CallRecordFields:
    return CallRecordFields(
        tenant_id, conference_id, call.call_id, call.room, "in", call.caller, call.room,
        call.started_at, call.answered_at, call.time, f"{call.status} {call.reason}",
    )  # fmt: skip


def outgoing(call: CallOut, conference_id: str | None) -> CallRecordFields:
    assert call.ended_at is not None, "only a finished call out is recorded"
    return CallRecordFields(
        call.tenant_id, conference_id, call.ref, call.room, "out", call.caller_id, call.dest,
        call.started_at, call.answered_at, call.ended_at, f"{call.status} {call.reason}",
        call.tag or None,
    )  # fmt: skip


async def write(store: Store, fields: CallRecordFields) -> None:
    def at(epoch: float) -> datetime:
        return datetime.fromtimestamp(epoch, UTC)

    record = await store.calls.open_call(
        call_id=fields.call_id,
        room=fields.room,
        direction=fields.direction,
        caller=fields.caller,
        callee=fields.callee,
        started_at=at(fields.started_at),
        tenant_id=fields.tenant_id,
        conference_id=fields.conference_id,
        tag=fields.tag,
    )
    if fields.answered_at is not None:
        await store.calls.answer_call(record, at(fields.answered_at))
    await store.calls.close_call(record, at(fields.ended_at), fields.reason)
