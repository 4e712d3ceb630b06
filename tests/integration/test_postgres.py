"""PostgreSQL by URL, for real: a throwaway PostgreSQL server (tests/postgres.py), one fresh
database per test. What is PostgreSQL's own: the store migrates a fresh database to head with
timestamptz columns and a partial unique index, clips peer-chosen values to the column lengths
PostgreSQL enforces, keeps instants whatever the server's time zone, and the whole product
(bridge, control plane, HTTP API) keeps a booking across a restart on a plain
`postgresql://user@host:port/db` URL.

Every query family runs on PostgreSQL too: tests/unit/test_store.py runs each of its store tests
on SQLite and on this server (its `[postgresql]` cases)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from bridge.config import load_config
from control.runtime import Runtime
from control.store import Store, open_store
from control.store.engine import alembic_config
from control.store.models import Base
from tests.integration.harness import ADMIN_TOKEN, loopback_config, with_control
from tests.postgres import SERVER_TIMEZONE, PostgresServer
from tests.store_data import T0, TABLES

pytestmark = pytest.mark.integration

HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


@pytest.fixture
async def database(postgres: PostgresServer) -> str:
    """The URL of a new, empty database of its own."""
    return await postgres.create_database()


@pytest.fixture
async def store(database: str) -> AsyncIterator[Store]:
    store = await open_store(database)
    yield store
    await store.close()


async def scalars(store: Store, sql: str) -> list[Any]:
    async with store.engine.connect() as conn:
        return list((await conn.execute(text(sql))).scalars())


# --- schema ----------------------------------------------------------------------------------


async def test_fresh_database_is_migrated_to_head_and_reopen_is_idempotent(database: str) -> None:
    assert database.startswith("postgresql://confbridge@127.0.0.1:")
    store = await open_store(database)
    try:
        assert store.engine.dialect.name == "postgresql"
        assert store.engine.dialect.driver == "asyncpg"
        tables = await scalars(
            store, "SELECT table_name FROM information_schema.tables WHERE table_schema='public'"
        )
        assert set(tables) >= TABLES
        assert await scalars(store, "SELECT version_num FROM alembic_version") == [HEAD]
        # Instants are timestamptz; open room names are unique through a partial index.
        kinds = await scalars(
            store,
            "SELECT DISTINCT data_type FROM information_schema.columns "
            "WHERE table_schema='public' AND column_name LIKE '%\\_at'",
        )
        assert kinds == ["timestamp with time zone"]
        (index,) = await scalars(
            store, "SELECT indexdef FROM pg_indexes WHERE indexname='uq_conferences_open_name'"
        )
        assert "UNIQUE" in index and "WHERE" in index and "COMPLETED" in index

        def diff(connection: Connection) -> list[Any]:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return compare_metadata(context, Base.metadata)

        async with store.engine.connect() as conn:
            assert await conn.run_sync(diff) == []
        acme = await store.tenants.create_tenant("acme", now=T0)
    finally:
        await store.close()

    for url in (database, database.replace("postgresql://", "postgresql+asyncpg://")):
        again = await open_store(url)
        try:
            assert await scalars(again, "SELECT version_num FROM alembic_version") == [HEAD]
            assert await again.tenants.list_tenants() == [acme]
        finally:
            await again.close()


# --- PostgreSQL's own rules ------------------------------------------------------------------


async def test_call_records_take_over_long_sip_values(store: Store) -> None:
    """A peer chooses the Call-ID, From user and Request-URI user: PostgreSQL enforces column
    lengths (SQLite does not), so the store clips them rather than losing the CDR."""
    record_id = await store.calls.open_call(
        call_id="c" * 400, room="r" * 100, direction="in", caller="f" * 300, callee="r" * 300,
        started_at=T0,
    )  # fmt: skip
    await store.calls.close_call(record_id, T0 + timedelta(seconds=1), "487 " + "reason " * 20)
    record = await store.calls.get_call(record_id)
    assert record is not None
    assert (len(record.call_id), len(record.room), len(record.caller), len(record.callee)) == (
        255, 64, 255, 255,
    )  # fmt: skip
    assert record.end_reason is not None and record.end_reason.startswith("487 reason")


async def test_instants_do_not_lean_on_the_server_time_zone(store: Store) -> None:
    assert await scalars(store, "SHOW timezone") == [SERVER_TIMEZONE]  # not UTC on purpose
    local = datetime(2030, 6, 1, 14, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    await store.tenants.create_tenant("acme", now=local)
    tenant = await store.tenants.get_tenant("acme")
    assert tenant is not None and tenant.created_at == local and tenant.created_at.tzinfo == UTC
    # The database holds the same instant, whatever the session's time zone.
    assert await scalars(store, "SELECT created_at AT TIME ZONE 'UTC' FROM tenants") == [
        datetime(2030, 6, 1, 12, 0, 0, 123456)
    ]


async def test_voice_message_pages_carry_their_total(store: Store) -> None:
    """The page and its total come from one statement (a window count) on PostgreSQL too."""
    tenant = await store.tenants.create_tenant("acme", now=T0)
    assert await store.voicemail.list_messages(tenant.id, 0, 10) == ([], 0)  # none: no count
    for minute in range(3):
        await store.voicemail.add_message(
            tenant.id, caller=f"+49{minute}", caller_name="Unavailable",
            created_at=T0 + timedelta(minutes=minute), duration_ms=3000, path=f"/m{minute}.wav",
        )  # fmt: skip
    page, total = await store.voicemail.list_messages(tenant.id, 1, 1)
    assert [m.caller for m in page] == ["+491"] and total == 3  # newest first
    assert await store.voicemail.list_messages(tenant.id, 5, 1) == ([], 3)  # past the end


# --- the whole product -----------------------------------------------------------------------


async def test_product_keeps_a_booking_across_a_restart_on_postgresql(
    database: str, tmp_path: Path
) -> None:
    # The URL passes the configuration rules, as a deployment would give it.
    checked = load_config(env={"CONFBRIDGE_DATA_DATABASE_URL": database})
    assert checked.data.database_url == database
    config = with_control(loopback_config(), tmp_path / "data")
    config = dataclasses.replace(
        config, data=dataclasses.replace(config.data, database_url=database)
    )
    start = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=654321)
    sent = start.astimezone(timezone(timedelta(hours=-5)))  # any offset: an instant is an instant

    runtime = await Runtime(config).start()
    try:
        assert runtime.store is not None and runtime.store.engine.dialect.name == "postgresql"
        async with httpx.AsyncClient(base_url=runtime.base_url, timeout=10, trust_env=False) as c:
            reply = await c.post(
                "/v1/admin/applications/acme/tokens",
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            )
            assert reply.status_code == 201, reply.text
            headers = {"Authorization": f"Bearer {reply.json()['token']}"}
            reply = await c.post(
                "/v1/conferences",
                json={"name": "pg1", "start_time": sent.isoformat(), "duration_minutes": 30},
                headers=headers,
            )
            assert reply.status_code == 201, reply.text
            created = reply.json()
            assert created["state"] == "RESERVED"
            assert datetime.fromisoformat(created["start_time"]) == start
    finally:
        await runtime.stop()
    assert not (tmp_path / "data" / "confbridge.db").exists()  # nothing went to SQLite

    runtime = await Runtime(config).start()
    try:
        async with httpx.AsyncClient(base_url=runtime.base_url, timeout=10, trust_env=False) as c:
            reply = await c.get("/v1/conferences/pg1", headers=headers)
            assert reply.status_code == 200, reply.text
            again = reply.json()
    finally:
        await runtime.stop()
    assert again["state"] == "RESERVED"
    assert again["start_time"] == created["start_time"]
    assert datetime.fromisoformat(again["start_time"]) == start
    assert (again["id"], again["end_time"]) == (created["id"], created["end_time"])
