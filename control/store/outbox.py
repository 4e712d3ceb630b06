"""The webhook outbox: events written in the same database as everything else, so an event is
never lost between "it happened" and "the receiver has it", even across restarts.

Order per subscription: an event is not due while an older event of the same subscription is
still waiting for a retry, so a receiver never sees event N+1 before event N.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, exists, func, or_, select, update
from sqlalchemy.orm import aliased

from .base import StoreBase
from .errors import NotFound
from .models import OutboxRow, SubscriptionRow
from .records import OutboxItem

PENDING = (OutboxRow.delivered_at.is_(None), OutboxRow.next_attempt_at.is_not(None))


def older_pending(waiting_at: datetime | None = None) -> ColumnElement[bool]:
    """True when an older undelivered event of the same subscription exists (one that is
    still waiting for its retry at `waiting_at`, when given)."""
    older = aliased(OutboxRow)
    conditions = [
        older.subscription_id == OutboxRow.subscription_id,
        older.id < OutboxRow.id,
        older.delivered_at.is_(None),
        older.next_attempt_at.is_not(None),
    ]
    if waiting_at is not None:
        conditions.append(older.next_attempt_at > waiting_at)
    return exists().where(*conditions)


class OutboxQueries(StoreBase):
    async def enqueue_event(
        self, tenant_id: str, event_type: str, payload: dict[str, Any], now: datetime
    ) -> int:
        """Queue the event for each of the tenant's live subscriptions that want it; returns
        how many deliveries were queued. `payload` must be JSON-serialisable."""
        query = select(SubscriptionRow).where(
            SubscriptionRow.tenant_id == tenant_id, SubscriptionRow.expires_at > now
        )
        async with self._session() as session, session.begin():
            subscriptions = (await session.scalars(query)).all()
            wanted = [s for s in subscriptions if not s.event_types or event_type in s.event_types]
            session.add_all(
                OutboxRow(
                    subscription_id=s.id,
                    tenant_id=tenant_id,
                    event_type=event_type,
                    payload=payload,
                    created_at=now,
                    attempts=0,
                    next_attempt_at=now,
                )
                for s in wanted
            )
        return len(wanted)

    async def enqueue_notification(
        self,
        tenant_id: str,
        callback_url: str,
        event_type: str,
        payload: dict[str, Any],
        now: datetime,
    ) -> int:
        """Queue one delivery to `callback_url`, outside any subscription (a notify_url)."""
        row = OutboxRow(
            subscription_id=None,
            callback_url=callback_url,
            tenant_id=tenant_id,
            event_type=event_type,
            payload=payload,
            created_at=now,
            attempts=0,
            next_attempt_at=now,
        )
        async with self._session() as session, session.begin():
            session.add(row)
            await session.flush()
            return row.id

    async def due_events(self, now: datetime, limit: int = 100) -> list[OutboxItem]:
        """Undelivered events due at `now`, oldest first, skipping any queued behind an older
        event of its subscription that is waiting for a retry."""
        blocked = older_pending(waiting_at=now)
        query = (
            select(OutboxRow, func.coalesce(OutboxRow.callback_url, SubscriptionRow.callback_url))
            .outerjoin(SubscriptionRow, SubscriptionRow.id == OutboxRow.subscription_id)
            .where(*PENDING, OutboxRow.next_attempt_at <= now, ~blocked)
            .order_by(OutboxRow.id)
            .limit(limit)
        )
        async with self._session() as session:
            rows = (await session.execute(query)).all()
        return [
            OutboxItem(
                id=row.id,
                subscription_id=row.subscription_id,
                tenant_id=row.tenant_id,
                event_type=row.event_type,
                payload=row.payload,
                callback_url=url,
                attempts=row.attempts,
                next_attempt_at=row.next_attempt_at,
                created_at=row.created_at,
            )
            for row, url in rows
        ]

    async def mark_delivered(self, outbox_id: int, now: datetime) -> None:
        await self._update_outbox(outbox_id, delivered_at=now, attempts=OutboxRow.attempts + 1)

    async def mark_failed(
        self, outbox_id: int, error: str, next_attempt_at: datetime | None
    ) -> None:
        """Count a failed attempt; `next_attempt_at=None` gives up on the event for good."""
        await self._update_outbox(
            outbox_id,
            attempts=OutboxRow.attempts + 1,
            last_error=error[:1000],
            next_attempt_at=next_attempt_at,
        )

    async def next_due_at(self) -> datetime | None:
        """The earliest time an event can be sent: the minimum over each subscription's oldest
        pending event (later ones wait for it, so they cannot be due sooner)."""
        query = select(func.min(OutboxRow.next_attempt_at)).where(*PENDING, ~older_pending())
        async with self._session() as session:
            return await session.scalar(query)

    async def pending_count(self) -> int:
        """Events still to be delivered (given-up ones not counted)."""
        query = select(func.count()).select_from(OutboxRow).where(*PENDING)
        async with self._session() as session:
            return await session.scalar(query) or 0

    async def purge_outbox(self, before: datetime) -> int:
        """Delete delivered and given-up events created before `before`; returns how many."""
        query = delete(OutboxRow).where(
            OutboxRow.created_at < before,
            or_(OutboxRow.delivered_at.is_not(None), OutboxRow.next_attempt_at.is_(None)),
        )
        async with self._session() as session, session.begin():
            result = await session.execute(query)
        return result.rowcount  # type: ignore[attr-defined,no-any-return]

    async def _update_outbox(self, outbox_id: int, **values: Any) -> None:
        async with self._session() as session, session.begin():
            result = await session.execute(
                update(OutboxRow).where(OutboxRow.id == outbox_id).values(**values)
            )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise NotFound(f"outbox event {outbox_id}")
