"""The Store: every persistence operation of the control plane, async, one transaction each.

The operations are grouped by table (`store.tenants`, `store.conferences`,
`store.subscriptions`, `store.calls`, `store.outbox`, `store.oauth`, `store.forwarding`,
`store.voicemail`), one small module each, sharing one engine; this class only holds them together.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from .calls import CallQueries
from .conferences import ConferenceQueries
from .errors import Conflict, NotFound, StoreError
from .forwarding import ForwardingQueries
from .oauth import OAuthQueries
from .outbox import OutboxQueries
from .subscriptions import SubscriptionQueries
from .tenants import TenantQueries
from .voicemail import VoiceMessageQueries

__all__ = ["Conflict", "NotFound", "Store", "StoreError"]


class Store:
    """Open one with `open_store(url)`; `await store.close()` when done."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.tenants = TenantQueries(engine)
        self.conferences = ConferenceQueries(engine)
        self.subscriptions = SubscriptionQueries(engine)
        self.calls = CallQueries(engine)
        self.outbox = OutboxQueries(engine)
        self.oauth = OAuthQueries(engine)
        self.forwarding = ForwardingQueries(engine)
        self.voicemail = VoiceMessageQueries(engine)

    async def close(self) -> None:
        """Close every pooled connection; the store cannot be used afterwards."""
        await self.engine.dispose()
