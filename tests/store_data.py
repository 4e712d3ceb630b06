"""Shared data for the store's tests: those run on both backends (tests/unit/test_store.py) and
those about PostgreSQL alone (tests/integration/test_postgres.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

T0 = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
TABLES = {
    "alembic_version",
    "api_tokens",
    "call_records",
    "conference_callers",
    "conferences",
    "outbox",
    "subscriptions",
    "tenants",
}


def conference_fields(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "name": "room1",
        "access": "room",
        "code": "1234",
        "start_at": None,
        "duration_s": None,
        "max_participants": None,
        "divert_to": None,
        "leader": None,
        "state": "HOLDING",
        "now": T0,
    }
    fields.update(overrides)
    return fields
