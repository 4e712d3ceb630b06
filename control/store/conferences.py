"""Conferences (rooms) and the caller numbers allowed into them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bridge.config import ACCESS_MODES

from .base import StoreBase, new_id
from .errors import Conflict, NotFound
from .models import ConferenceCallerRow, ConferenceRow
from .records import STATES, Conference

log = structlog.get_logger(__name__)

COMPLETED = "COMPLETED"
UPDATABLE = frozenset(
    {
        "name", "access", "code", "start_at", "duration_s", "max_participants", "divert_to",
        "leader", "locked", "manual_answer", "end_on_leader_exit", "state", "ended_at",
        "end_reason", "warned",
    }
)  # fmt: skip


def check_fields(fields: dict[str, Any]) -> None:
    """Refuse values the bridge could not act on, before they reach the database."""
    if "access" in fields and fields["access"] not in ACCESS_MODES:
        raise ValueError(f"access must be one of {ACCESS_MODES}, got {fields['access']!r}")
    if "state" in fields and fields["state"] not in STATES:
        raise ValueError(f"state must be one of {STATES}, got {fields['state']!r}")
    code = fields.get("code")
    if code is not None and not (isinstance(code, str) and code.isdigit()):
        raise ValueError(f"code must be a string of digits, got {code!r}")


def conference_record(row: ConferenceRow, callers: Sequence[str]) -> Conference:
    return Conference(
        id=row.id,
        tenant_id=row.tenant_id,
        name=row.name,
        access=row.access,
        code=row.code,
        start_at=row.start_at,
        duration_s=row.duration_s,
        max_participants=row.max_participants,
        divert_to=row.divert_to,
        leader=row.leader,
        locked=row.locked,
        manual_answer=row.manual_answer,
        end_on_leader_exit=row.end_on_leader_exit,
        state=row.state,
        created_at=row.created_at,
        ended_at=row.ended_at,
        end_reason=row.end_reason,
        warned=row.warned,
        callers=tuple(callers),
    )


async def with_callers(session: AsyncSession, rows: Sequence[ConferenceRow]) -> list[Conference]:
    """Attach caller lists with one query for the whole page (no per-row round trips)."""
    callers: dict[str, list[str]] = {row.id: [] for row in rows}
    if rows:
        query = (
            select(ConferenceCallerRow.conference_id, ConferenceCallerRow.number)
            .where(ConferenceCallerRow.conference_id.in_(callers))
            .order_by(ConferenceCallerRow.id)
        )
        for conference_id, number in (await session.execute(query)).all():
            callers[conference_id].append(number)
    return [conference_record(row, callers[row.id]) for row in rows]


class ConferenceQueries(StoreBase):
    async def create_conference(
        self,
        tenant_id: str,
        *,
        name: str,
        access: str,
        code: str | None,
        start_at: datetime | None,
        duration_s: int | None,
        max_participants: int | None,
        divert_to: str | None,
        leader: str | None,
        manual_answer: bool = False,
        end_on_leader_exit: bool = False,
        callers: Iterable[str] = (),
        state: str,
        now: datetime,
    ) -> Conference:
        """Create a room. Conflict when any tenant has an open room of that name; a COMPLETED
        room keeps its row (and its name) as history, which does not block reuse."""
        fields = {"access": access, "code": code, "state": state}
        check_fields(fields)
        row = ConferenceRow(
            id=new_id(),
            tenant_id=tenant_id,
            name=name,
            start_at=start_at,
            duration_s=duration_s,
            max_participants=max_participants,
            divert_to=divert_to,
            leader=leader,
            locked=False,
            manual_answer=manual_answer,
            end_on_leader_exit=end_on_leader_exit,
            created_at=now,
            warned=False,
            **fields,
        )
        numbers = list(dict.fromkeys(callers))
        try:
            async with self._session() as session, session.begin():
                session.add(row)
                await session.flush()
                session.add_all(
                    ConferenceCallerRow(conference_id=row.id, number=n) for n in numbers
                )
        except IntegrityError as exc:
            raise Conflict(f"conference {name!r} exists") from exc
        log.info("store.conference_created", tenant=tenant_id, conference=row.id, name=name)
        return conference_record(row, numbers)

    async def get_conference(self, tenant_id: str, name: str) -> Conference | None:
        """The tenant's room of that name: the open one, else the latest COMPLETED one."""
        query = (
            select(ConferenceRow)
            .where(ConferenceRow.tenant_id == tenant_id, ConferenceRow.name == name)
            .order_by((ConferenceRow.state == COMPLETED).asc(), ConferenceRow.created_at.desc())
            .limit(1)
        )
        return await self._conference_where(query)

    async def get_conference_by_id(self, conference_id: str) -> Conference | None:
        query = select(ConferenceRow).where(ConferenceRow.id == conference_id)
        return await self._conference_where(query)

    async def conference_by_name(self, name: str) -> Conference | None:
        """The open room a SIP Request-URI names, whichever tenant owns it."""
        query = select(ConferenceRow).where(
            ConferenceRow.name == name, ConferenceRow.state != COMPLETED
        )
        return await self._conference_where(query)

    async def name_owners(self) -> dict[str, str]:
        """Every conference name still on record (any state) and the tenant that holds it: a
        name stays its tenant's until the rows are deleted."""
        query = select(ConferenceRow.name, ConferenceRow.tenant_id).order_by(
            ConferenceRow.created_at
        )
        async with self._session() as session:
            return {name: tenant for name, tenant in (await session.execute(query)).all()}

    async def purge_ended(self, before: datetime) -> int:
        """Delete the conferences that ended before `before` (their callers go with them;
        call records stay, unlinked): their names are free again. Returns how many."""
        query = delete(ConferenceRow).where(
            ConferenceRow.state == COMPLETED, ConferenceRow.ended_at < before
        )
        async with self._session() as session, session.begin():
            result = await session.execute(query)
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def list_conferences(
        self, tenant_id: str, offset: int = 0, limit: int = 100
    ) -> tuple[list[Conference], int]:
        """One page of the tenant's rooms (COMPLETED included) and the total count."""
        where = ConferenceRow.tenant_id == tenant_id
        query = (
            select(ConferenceRow)
            .where(where)
            .order_by(ConferenceRow.created_at, ConferenceRow.name, ConferenceRow.id)
            .offset(offset)
            .limit(limit)
        )
        async with self._session() as session:
            total = await session.scalar(
                select(func.count()).select_from(ConferenceRow).where(where)
            )
            rows = (await session.scalars(query)).all()
            return await with_callers(session, rows), total or 0

    async def open_conferences(self) -> list[Conference]:
        """Every tenant's rooms not COMPLETED: what the scheduler reloads after a restart."""
        query = (
            select(ConferenceRow)
            .where(ConferenceRow.state != COMPLETED)
            .order_by(ConferenceRow.created_at, ConferenceRow.id)
        )
        async with self._session() as session:
            return await with_callers(session, (await session.scalars(query)).all())

    async def update_conference(self, conference_id: str, **fields: Any) -> Conference:
        """Change the given columns; `callers=[...]` replaces the caller list."""
        callers = fields.pop("callers", None)
        unknown = set(fields) - UPDATABLE
        if unknown:
            raise ValueError(f"cannot update conference fields {sorted(unknown)}")
        check_fields(fields)
        try:
            async with self._session() as session, session.begin():
                row = await session.get(ConferenceRow, conference_id)
                if row is None:
                    raise NotFound(f"conference {conference_id}")
                for key, value in fields.items():
                    setattr(row, key, value)
                if callers is not None:
                    await session.execute(
                        delete(ConferenceCallerRow).where(
                            ConferenceCallerRow.conference_id == conference_id
                        )
                    )
                    session.add_all(
                        ConferenceCallerRow(conference_id=conference_id, number=n)
                        for n in dict.fromkeys(callers)
                    )
                await session.flush()
                (conference,) = await with_callers(session, [row])
        except IntegrityError as exc:
            raise Conflict(f"conference name {fields.get('name')!r} is taken") from exc
        return conference

    async def delete_conference(self, conference_id: str) -> None:
        async with self._session() as session, session.begin():
            result = await session.execute(
                delete(ConferenceRow).where(ConferenceRow.id == conference_id)
            )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise NotFound(f"conference {conference_id}")
        log.info("store.conference_deleted", conference=conference_id)

    async def add_caller(self, conference_id: str, number: str) -> None:
        """Allow a number into the room; adding it twice is a no-op."""
        try:
            async with self._session() as session, session.begin():
                if await session.get(ConferenceRow, conference_id) is None:
                    raise NotFound(f"conference {conference_id}")
                exists = await session.scalar(
                    select(ConferenceCallerRow.id).where(
                        ConferenceCallerRow.conference_id == conference_id,
                        ConferenceCallerRow.number == number,
                    )
                )
                if exists is None:
                    session.add(ConferenceCallerRow(conference_id=conference_id, number=number))
        except IntegrityError:
            pass  # a concurrent add of the same number won: the outcome is the same

    async def remove_caller(self, conference_id: str, number: str) -> None:
        async with self._session() as session, session.begin():
            result = await session.execute(
                delete(ConferenceCallerRow).where(
                    ConferenceCallerRow.conference_id == conference_id,
                    ConferenceCallerRow.number == number,
                )
            )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise NotFound(f"caller {number} in conference {conference_id}")

    async def _conference_where(self, query: Any) -> Conference | None:
        async with self._session() as session:
            row = await session.scalar(query)
            if row is None:
                return None
            (conference,) = await with_callers(session, [row])
            return conference
