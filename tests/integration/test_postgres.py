"""PostgreSQL by URL, for real: a throwaway PostgreSQL server (tests/postgres.py), one fresh
database per test. The store migrates it, every query family runs on it, times keep their
microseconds, and the whole product (bridge, control plane, HTTP API) keeps a booking across a
restart on a plain `postgresql://user@host:port/db` URL."""

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
from sqlalchemy.exc import StatementError

from bridge.config import load_config
from control.runtime import Runtime
from control.store import Conflict, NotFound, Store, open_store
from control.store.engine import alembic_config
from control.store.models import Base
from tests.integration.harness import ADMIN_TOKEN, loopback_config, with_control
from tests.postgres import SERVER_TIMEZONE, PostgresServer, postgres  # noqa: F401 (fixture)
from tests.store_data import T0, TABLES, conference_fields

pytestmark = pytest.mark.integration

HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


@pytest.fixture
async def database(postgres: PostgresServer) -> str:  # noqa: F811
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
        acme = await store.create_tenant("acme", now=T0)
    finally:
        await store.close()

    for url in (database, database.replace("postgresql://", "postgresql+asyncpg://")):
        again = await open_store(url)
        try:
            assert await scalars(again, "SELECT version_num FROM alembic_version") == [HEAD]
            assert await again.list_tenants() == [acme]
        finally:
            await again.close()


# --- tenants, tokens, conferences ------------------------------------------------------------


async def test_tenants_and_tokens(store: Store) -> None:
    acme = await store.create_tenant("acme", now=T0)
    beta = await store.create_tenant("beta")
    with pytest.raises(Conflict):
        await store.create_tenant("acme")
    assert await store.get_tenant("acme") == acme
    assert await store.get_tenant(acme.id) == acme
    assert [t.name for t in await store.list_tenants()] == ["acme", "beta"]

    token = await store.create_token(acme.id)
    assert await store.tenant_for_token(token) == acme
    assert await store.tenant_for_token(token + "x") is None
    await store.add_token(beta.id, "configured-secret-token")
    await store.add_token(beta.id, "configured-secret-token")  # idempotent
    assert await store.tenant_for_token("configured-secret-token") == beta
    with pytest.raises(Conflict):
        await store.add_token(acme.id, "configured-secret-token")
    with pytest.raises(NotFound):
        await store.create_token("0" * 32)
    stored = await scalars(store, "SELECT token_hash FROM api_tokens")
    assert token not in stored and "configured-secret-token" not in stored


async def test_conferences_pagination_updates_and_callers(store: Store) -> None:
    acme = await store.create_tenant("acme")
    start = T0 + timedelta(hours=1)
    created = await store.create_conference(
        acme.id,
        **conference_fields(
            start_at=start, duration_s=600, max_participants=5, leader="100", callers=["100", "101"]
        ),
    )
    assert created.callers == ("100", "101")
    assert created.end_at == start + timedelta(seconds=600)
    assert await store.get_conference(acme.id, "room1") == created
    assert await store.get_conference_by_id(created.id) == created
    assert await store.conference_by_name("room1") == created

    updated = await store.update_conference(created.id, state="ACTIVE", locked=True, warned=True)
    assert (updated.state, updated.locked, updated.warned) == ("ACTIVE", True, True)
    assert await store.get_conference(acme.id, "room1") == updated
    assert (await store.update_conference(created.id, callers=["200"])).callers == ("200",)
    await store.add_caller(created.id, "+4420")
    await store.add_caller(created.id, "+4420")  # idempotent
    await store.remove_caller(created.id, "200")
    with pytest.raises(NotFound):
        await store.remove_caller(created.id, "200")
    with pytest.raises(NotFound):
        await store.add_caller("0" * 32, "+1")
    with pytest.raises(NotFound):
        await store.update_conference("0" * 32, locked=True)

    for i in range(6):
        await store.create_conference(
            acme.id, **conference_fields(name=f"r{i}", now=T0 + timedelta(seconds=i + 1))
        )
    page, total = await store.list_conferences(acme.id, offset=0, limit=3)
    assert total == 7 and [c.name for c in page] == ["room1", "r0", "r1"]
    assert page[0].callers == ("+4420",)
    page, total = await store.list_conferences(acme.id, offset=6, limit=3)
    assert total == 7 and [c.name for c in page] == ["r5"]
    assert await store.list_conferences("0" * 32, 0, 10) == ([], 0)

    await store.delete_conference(created.id)
    assert await store.get_conference(acme.id, "room1") is None
    assert await scalars(store, "SELECT count(*) FROM conference_callers") == [0]  # cascaded
    with pytest.raises(NotFound):
        await store.delete_conference(created.id)


async def test_names_are_unique_across_tenants_until_completed(store: Store) -> None:
    acme = await store.create_tenant("acme")
    beta = await store.create_tenant("beta")
    first = await store.create_conference(acme.id, **conference_fields())
    with pytest.raises(Conflict):
        await store.create_conference(beta.id, **conference_fields())
    with pytest.raises(Conflict):
        await store.create_conference(acme.id, **conference_fields())
    other = await store.create_conference(beta.id, **conference_fields(name="room2"))
    with pytest.raises(Conflict):
        await store.update_conference(other.id, name="room1")
    assert await store.get_conference(beta.id, "room1") is None  # tenants kept apart

    ended = await store.update_conference(
        first.id, state="COMPLETED", ended_at=T0 + timedelta(minutes=5), end_reason="api"
    )
    assert await store.conference_by_name("room1") is None
    reused = await store.create_conference(
        beta.id, **conference_fields(now=T0 + timedelta(minutes=6))
    )
    assert await store.conference_by_name("room1") == reused
    assert await store.get_conference(beta.id, "room1") == reused
    assert await store.get_conference(acme.id, "room1") == ended  # history stays readable
    assert {c.id for c in await store.open_conferences()} == {reused.id, other.id}
    with pytest.raises(Conflict):
        await store.update_conference(first.id, state="ACTIVE")
    # The failed statements above aborted only their own transactions.
    assert len(await store.list_tenants()) == 2


# --- subscriptions and the outbox ------------------------------------------------------------


async def test_subscriptions_and_enqueue_filtering(store: Store) -> None:
    acme = await store.create_tenant("acme")
    beta = await store.create_tenant("beta")
    later = T0 + timedelta(hours=1)
    every = await store.create_subscription(acme.id, "http://h/every", [], later, T0)
    joins = await store.create_subscription(
        acme.id, "http://h/joins", ["joined", "joined"], later, T0 + timedelta(microseconds=1)
    )
    await store.create_subscription(acme.id, "http://h/expired", [], T0, T0 - timedelta(hours=1))
    await store.create_subscription(beta.id, "http://h/beta", [], later, T0)
    assert joins.event_types == ("joined",)
    assert await store.get_subscription(acme.id, joins.id) == joins
    assert await store.get_subscription(beta.id, joins.id) is None
    assert [s.callback_url for s in await store.list_subscriptions(acme.id)] == [
        "http://h/expired",  # oldest first
        "http://h/every",
        "http://h/joins",
    ]
    renewed = await store.renew_subscription(acme.id, every.id, later + timedelta(days=1))
    assert renewed.expires_at == later + timedelta(days=1)

    payload = {"n": 1, "text": "grüße", "nested": {"list": [1, 2.5, None, True]}}
    assert await store.enqueue_event(acme.id, "joined", payload, T0) == 2
    assert await store.enqueue_event(acme.id, "left", {"n": 2}, T0) == 1
    assert await store.enqueue_event(acme.id, "left", {"n": 3}, later) == 1  # joins expired
    due = await store.due_events(T0)
    # Events in order; one event's deliveries to different subscriptions in any order.
    assert [i.payload["n"] for i in due] == [1, 1, 2]
    assert sorted((i.payload["n"], i.callback_url) for i in due) == [
        (1, "http://h/every"),
        (1, "http://h/joins"),
        (2, "http://h/every"),
    ]
    assert due[0].payload == payload
    assert {i.subscription_id for i in due} == {every.id, joins.id}
    assert await store.pending_count() == 4

    with pytest.raises(NotFound):
        await store.delete_subscription(beta.id, joins.id)
    await store.delete_subscription(acme.id, joins.id)
    assert await store.pending_count() == 3  # its event went with it


async def test_outbox_due_and_mark_flow(store: Store) -> None:
    acme = await store.create_tenant("acme")
    one = await store.create_subscription(acme.id, "http://h/1", [], T0 + timedelta(days=1), T0)
    await store.create_subscription(acme.id, "http://h/2", [], T0 + timedelta(days=1), T0)
    assert await store.next_due_at() is None
    await store.enqueue_event(acme.id, "e", {"n": 1}, T0)
    await store.enqueue_event(acme.id, "e", {"n": 2}, T0 + timedelta(seconds=1))
    assert await store.due_events(T0 - timedelta(microseconds=1)) == []
    assert len(await store.due_events(T0)) == 2
    assert len(await store.due_events(T0 + timedelta(seconds=1), limit=3)) == 3
    assert await store.next_due_at() == T0

    first_one, first_two, second_one, second_two = await store.due_events(T0 + timedelta(days=1))
    assert first_one.subscription_id == one.id and second_one.subscription_id == one.id
    retry = T0 + timedelta(seconds=30)
    await store.mark_failed(first_one.id, "HTTP 500 " + "x" * 2000, retry)
    await store.mark_delivered(first_two.id, T0 + timedelta(seconds=2))
    now = T0 + timedelta(seconds=10)
    assert [i.id for i in await store.due_events(now)] == [second_two.id]  # one's 2nd waits
    await store.mark_delivered(second_two.id, now)
    assert await store.next_due_at() == retry
    assert await store.pending_count() == 2

    again, held = await store.due_events(retry)
    assert (again.id, again.attempts, again.next_attempt_at) == (first_one.id, 1, retry)
    assert held.id == second_one.id
    await store.mark_delivered(again.id, retry)
    await store.mark_failed(held.id, "gave up", None)
    assert await store.pending_count() == 0
    assert await store.next_due_at() is None
    assert await store.purge_outbox(T0 + timedelta(days=1)) == 4
    with pytest.raises(NotFound):
        await store.mark_delivered(held.id, retry)


# --- CDRs and time ---------------------------------------------------------------------------


async def test_call_records(store: Store) -> None:
    acme = await store.create_tenant("acme")
    conf = await store.create_conference(acme.id, **conference_fields())
    answered = await store.open_call(
        call_id="abc@host", room="room1", direction="in", caller="100", callee="room1",
        started_at=T0, tenant_id=acme.id, conference_id=conf.id,
    )  # fmt: skip
    missed = await store.open_call(
        call_id="def@host", room="room1", direction="out", caller="room1", callee="200",
        started_at=T0 + timedelta(seconds=1), tenant_id=acme.id,
    )  # fmt: skip
    await store.answer_call(answered, T0 + timedelta(seconds=2))
    await store.close_call(answered, T0 + timedelta(seconds=92, milliseconds=500), "bye")
    await store.close_call(missed, T0 + timedelta(seconds=20), "no-answer")
    with pytest.raises(NotFound):
        await store.answer_call("0" * 32, T0)

    calls, total = await store.list_calls(acme.id, 0, 10)
    assert total == 2 and [c.call_id for c in calls] == ["abc@host", "def@host"]
    assert calls[0].duration_s == 90.5 and calls[0].end_reason == "bye"
    assert calls[1].duration_s == 0 and calls[1].answered_at is None
    assert await store.list_calls(acme.id, 1, 1) == ([calls[1]], 2)
    assert (await store.list_calls(acme.id, 0, 10, conference_id=conf.id))[1] == 1

    await store.delete_conference(conf.id)  # the CDR outlives its room
    record = await store.get_call(answered)
    assert record is not None and record.conference_id is None and record.room == "room1"


async def test_call_records_take_over_long_sip_values(store: Store) -> None:
    """A peer chooses the Call-ID, From user and Request-URI user: PostgreSQL enforces column
    lengths (SQLite does not), so the store clips them rather than losing the CDR."""
    record_id = await store.open_call(
        call_id="c" * 400, room="r" * 100, direction="in", caller="f" * 300, callee="r" * 300,
        started_at=T0,
    )  # fmt: skip
    await store.close_call(record_id, T0 + timedelta(seconds=1), "487 " + "reason " * 20)
    record = await store.get_call(record_id)
    assert record is not None
    assert (len(record.call_id), len(record.room), len(record.caller), len(record.callee)) == (
        255, 64, 255, 255,
    )  # fmt: skip
    assert record.end_reason is not None and record.end_reason.startswith("487 reason")


async def test_times_round_trip_exactly_as_aware_utc(store: Store) -> None:
    assert await scalars(store, "SHOW timezone") == [SERVER_TIMEZONE]  # not UTC on purpose
    plus_two = timezone(timedelta(hours=2))
    local = datetime(2030, 6, 1, 14, 0, 0, 123456, tzinfo=plus_two)
    acme = await store.create_tenant("acme", now=local)
    conf = await store.create_conference(
        acme.id, **conference_fields(start_at=T0, duration_s=90, now=local)
    )
    ended_at = datetime(2030, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    await store.update_conference(conf.id, ended_at=ended_at)
    fetched = await store.get_conference_by_id(conf.id)
    tenant = await store.get_tenant("acme")
    assert fetched is not None and tenant is not None
    assert fetched.start_at == T0 and fetched.start_at.microsecond == 678901
    assert fetched.ended_at == ended_at and fetched.ended_at.microsecond == 999999
    assert fetched.end_at == T0 + timedelta(seconds=90)
    for value in (tenant.created_at, fetched.created_at):
        assert value == local and value.microsecond == 123456
    for value in (tenant.created_at, fetched.created_at, fetched.start_at, fetched.ended_at):
        assert value is not None and value.tzinfo == UTC
    assert tenant.created_at.hour == 12
    # The database holds the same instant, whatever the session's time zone.
    assert await scalars(store, "SELECT created_at AT TIME ZONE 'UTC' FROM tenants") == [
        datetime(2030, 6, 1, 12, 0, 0, 123456)
    ]
    with pytest.raises(StatementError, match="naive"):
        await store.create_tenant("naive", now=datetime(2030, 1, 1))


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
