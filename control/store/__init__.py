"""Persistence for the control plane: SQLite by default, PostgreSQL by URL, Alembic migrations.

Start with `store = await open_store("sqlite:///data/control.db")`; finish with `store.close()`.
"""

from .engine import open_store
from .errors import Conflict, NotFound, StoreError
from .records import (
    STATES,
    CallRecord,
    Conference,
    OutboxItem,
    Subscription,
    Tenant,
)
from .repository import Store

__all__ = [
    "STATES",
    "CallRecord",
    "Conference",
    "Conflict",
    "NotFound",
    "OutboxItem",
    "Store",
    "StoreError",
    "Subscription",
    "Tenant",
    "open_store",
]
