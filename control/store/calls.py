"""Call detail records: one row per call leg, written at start, answer and hang-up."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update

from .base import StoreBase, new_id
from .errors import NotFound
from .models import CallRecordRow
from .records import DIRECTIONS, CallRecord


def fit(column: str, value: str) -> str:
    """Clip text to its column: SIP peers pick Call-IDs, From users and Request-URI users of
    any length, and PostgreSQL refuses an over-long value (SQLite would keep it whole)."""
    length: int = CallRecordRow.__table__.c[column].type.length  # type: ignore[attr-defined]
    return value[:length]


def call_record(row: CallRecordRow) -> CallRecord:
    return CallRecord(
        id=row.id,
        tenant_id=row.tenant_id,
        conference_id=row.conference_id,
        room=row.room,
        call_id=row.call_id,
        direction=row.direction,
        caller=row.caller,
        callee=row.callee,
        started_at=row.started_at,
        answered_at=row.answered_at,
        ended_at=row.ended_at,
        end_reason=row.end_reason,
        tag=row.tag,
    )


class CallQueries(StoreBase):
    async def open_call(
        self,
        *,
        call_id: str,
        room: str,
        direction: str,
        caller: str,
        callee: str,
        started_at: datetime,
        tenant_id: str | None = None,
        conference_id: str | None = None,
        tag: str | None = None,
    ) -> str:
        """Start a CDR and return its id (for answer_call and close_call)."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        row = CallRecordRow(
            id=new_id(),
            tenant_id=tenant_id,
            conference_id=conference_id,
            room=fit("room", room),
            call_id=fit("call_id", call_id),
            direction=direction,
            caller=fit("caller", caller),
            callee=fit("callee", callee),
            started_at=started_at,
            tag=tag,
        )
        async with self._session() as session, session.begin():
            session.add(row)
        return row.id

    async def answer_call(self, record_id: str, at: datetime) -> None:
        await self._update_call(record_id, answered_at=at)

    async def close_call(self, record_id: str, at: datetime, reason: str) -> None:
        await self._update_call(record_id, ended_at=at, end_reason=fit("end_reason", reason))

    async def get_call(self, record_id: str) -> CallRecord | None:
        async with self._session() as session:
            row = await session.get(CallRecordRow, record_id)
        return call_record(row) if row else None

    async def list_calls(
        self,
        tenant_id: str | None,
        offset: int = 0,
        limit: int = 100,
        *,
        conference_id: str | None = None,
        direction: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> tuple[list[CallRecord], int]:
        """One page of a tenant's CDRs (oldest first) and the total count; optionally only
        one conference's, one direction's, or those started in [since, until)."""
        where = [CallRecordRow.tenant_id == tenant_id]
        if conference_id is not None:
            where.append(CallRecordRow.conference_id == conference_id)
        if direction is not None:
            where.append(CallRecordRow.direction == direction)
        if since is not None:
            where.append(CallRecordRow.started_at >= since)
        if until is not None:
            where.append(CallRecordRow.started_at < until)
        query = (
            select(CallRecordRow)
            .where(*where)
            .order_by(CallRecordRow.started_at, CallRecordRow.id)
            .offset(offset)
            .limit(limit)
        )
        async with self._session() as session:
            total = await session.scalar(
                select(func.count()).select_from(CallRecordRow).where(*where)
            )
            rows = (await session.scalars(query)).all()
        return [call_record(row) for row in rows], total or 0

    async def find_call(self, tenant_id: str, call_id: str, direction: str) -> CallRecord | None:
        """The tenant's latest CDR of that Call-ID (a call out's: its reference)."""
        query = (
            select(CallRecordRow)
            .where(
                CallRecordRow.tenant_id == tenant_id,
                CallRecordRow.call_id == call_id,
                CallRecordRow.direction == direction,
            )
            .order_by(CallRecordRow.started_at.desc())
            .limit(1)
        )
        async with self._session() as session:
            row = await session.scalar(query)
        return call_record(row) if row else None

    async def _update_call(self, record_id: str, **values: object) -> None:
        async with self._session() as session, session.begin():
            result = await session.execute(
                update(CallRecordRow).where(CallRecordRow.id == record_id).values(**values)
            )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise NotFound(f"call record {record_id}")
