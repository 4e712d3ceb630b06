"""The Store: every persistence operation of the control plane, async, one transaction each.

The methods live in one mixin per table group (tenants, conferences, subscriptions, calls,
outbox) so each module stays small; this class only puts them together.
"""

from __future__ import annotations

from .calls import CallQueries
from .conferences import ConferenceQueries
from .errors import Conflict, NotFound, StoreError
from .outbox import OutboxQueries
from .subscriptions import SubscriptionQueries
from .tenants import TenantQueries

__all__ = ["Conflict", "NotFound", "Store", "StoreError"]


class Store(TenantQueries, ConferenceQueries, SubscriptionQueries, CallQueries, OutboxQueries):
    """Open one with `open_store(url)`; `await store.close()` when done."""
