"""Webhook subscriptions: a tenant's callback URL, the event types it wants, an expiry."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import structlog
from sqlalchemy import delete, select

from .base import StoreBase, new_id
from .errors import NotFound
from .models import SubscriptionRow
from .records import Subscription

log = structlog.get_logger(__name__)


def subscription_record(row: SubscriptionRow) -> Subscription:
    return Subscription(
        id=row.id,
        tenant_id=row.tenant_id,
        callback_url=row.callback_url,
        event_types=tuple(row.event_types),
        expires_at=row.expires_at,
        created_at=row.created_at,
        label=row.label,
    )


class SubscriptionQueries(StoreBase):
    async def create_subscription(
        self,
        tenant_id: str,
        callback_url: str,
        event_types: Iterable[str],
        expires_at: datetime,
        now: datetime,
        label: str | None = None,
    ) -> Subscription:
        """Subscribe; an empty `event_types` means every event type."""
        row = SubscriptionRow(
            id=new_id(),
            tenant_id=tenant_id,
            callback_url=callback_url,
            event_types=list(dict.fromkeys(event_types)),
            expires_at=expires_at,
            created_at=now,
            label=label,
        )
        async with self._session() as session, session.begin():
            session.add(row)
        log.info("store.subscription_created", tenant=tenant_id, subscription=row.id)
        return subscription_record(row)

    async def get_subscription(self, tenant_id: str, subscription_id: str) -> Subscription | None:
        async with self._session() as session:
            row = await session.get(SubscriptionRow, subscription_id)
        if row is None or row.tenant_id != tenant_id:
            return None
        return subscription_record(row)

    async def list_subscriptions(self, tenant_id: str) -> list[Subscription]:
        """All of the tenant's subscriptions, expired ones included (oldest first)."""
        query = (
            select(SubscriptionRow)
            .where(SubscriptionRow.tenant_id == tenant_id)
            .order_by(SubscriptionRow.created_at, SubscriptionRow.id)
        )
        async with self._session() as session:
            rows = (await session.scalars(query)).all()
        return [subscription_record(row) for row in rows]

    async def renew_subscription(
        self, tenant_id: str, subscription_id: str, expires_at: datetime
    ) -> Subscription:
        async with self._session() as session, session.begin():
            row = await session.get(SubscriptionRow, subscription_id)
            if row is None or row.tenant_id != tenant_id:
                raise NotFound(f"subscription {subscription_id}")
            row.expires_at = expires_at
        return subscription_record(row)

    async def delete_subscription(self, tenant_id: str, subscription_id: str) -> None:
        """Delete it and (by cascade) its undelivered events."""
        async with self._session() as session, session.begin():
            result = await session.execute(
                delete(SubscriptionRow).where(
                    SubscriptionRow.id == subscription_id, SubscriptionRow.tenant_id == tenant_id
                )
            )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise NotFound(f"subscription {subscription_id}")
        log.info("store.subscription_deleted", tenant=tenant_id, subscription=subscription_id)
