"""Voice messages left on applications' lines: the row, the file stays where it was written."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select, update

from .base import StoreBase, new_id
from .models import VoiceMessageRow
from .records import VoiceMessage


def message_record(row: VoiceMessageRow) -> VoiceMessage:
    return VoiceMessage(
        row.id, row.tenant_id, row.caller, row.caller_name, row.created_at, row.duration_ms,
        row.path, row.read,
    )  # fmt: skip


class VoiceMessageQueries(StoreBase):
    async def add_message(
        self,
        tenant_id: str,
        *,
        caller: str,
        caller_name: str,
        created_at: datetime,
        duration_ms: int,
        path: str,
    ) -> VoiceMessage:
        row = VoiceMessageRow(
            id=new_id(),
            tenant_id=tenant_id,
            caller=caller[:255],
            caller_name=caller_name[:255],
            created_at=created_at,
            duration_ms=duration_ms,
            path=path,
            read=False,
        )
        async with self._session() as session, session.begin():
            session.add(row)
        return message_record(row)

    async def list_messages(
        self, tenant_id: str, offset: int, limit: int
    ) -> tuple[list[VoiceMessage], int]:
        """One page of the application's messages, newest first, and how many there are. The
        count comes with the rows (one statement): a message saved meanwhile cannot make the
        page and its total disagree."""
        where = VoiceMessageRow.tenant_id == tenant_id
        query = (
            select(VoiceMessageRow, func.count().over().label("total"))
            .where(where)
            .order_by(VoiceMessageRow.created_at.desc(), VoiceMessageRow.id)
            .offset(offset)
            .limit(limit)
        )
        async with self._session() as session:
            rows = (await session.execute(query)).all()
            if rows:
                total = rows[0].total
            elif offset == 0:  # none at all (a count now could see a message saved since)
                total = 0
            else:  # a page past the end
                count = select(func.count()).select_from(VoiceMessageRow).where(where)
                total = await session.scalar(count) or 0
        return [message_record(row[0]) for row in rows], total

    async def get_message(self, tenant_id: str, message_id: str) -> VoiceMessage | None:
        async with self._session() as session:
            row = await session.get(VoiceMessageRow, message_id)
        return message_record(row) if row is not None and row.tenant_id == tenant_id else None

    async def delete_message(self, tenant_id: str, message_id: str) -> bool:
        query = delete(VoiceMessageRow).where(
            VoiceMessageRow.tenant_id == tenant_id, VoiceMessageRow.id == message_id
        )
        async with self._session() as session, session.begin():
            result = await session.execute(query)
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def mark_read(self, tenant_id: str, message_id: str | None, read: bool) -> int:
        """Mark one message (or all of the application's, `message_id` None) read or unread."""
        where = [VoiceMessageRow.tenant_id == tenant_id]
        if message_id is not None:
            where.append(VoiceMessageRow.id == message_id)
        async with self._session() as session, session.begin():
            result = await session.execute(update(VoiceMessageRow).where(*where).values(read=read))
        return int(result.rowcount)  # type: ignore[attr-defined]
