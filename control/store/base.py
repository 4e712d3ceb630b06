"""The shared core of the Store: one engine, one short session (transaction) per method."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker


def new_id() -> str:
    """Row ids are random uuid4 hex: unguessable in URLs and unique across databases."""
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


class StoreBase:
    """One group of queries (a table and its neighbours) on the shared engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    def _session(self) -> AsyncSession:
        return self._sessions()

    async def close(self) -> None:
        """Close every pooled connection; the store cannot be used afterwards."""
        await self.engine.dispose()
