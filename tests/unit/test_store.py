"""control.store on both of its backends: migrations, tenants and tokens, conferences, callers,
subscriptions, CDRs, the outbox, UTC round trips and surviving a restart.

Every test that takes `store` or `database_url` runs twice: on a real SQLite file (`[sqlite]`)
and on a fresh database of a throwaway PostgreSQL server (`[postgresql]`, marked `integration`;
the server starts once per session, on first use, from tests/conftest.py). `-m "not integration"`
keeps to SQLite and never starts PostgreSQL. The tests that take `db_path` are about SQLite
itself; those about PostgreSQL itself are in tests/integration/test_postgres.py.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.exc import StatementError

from control.store import Conflict, NotFound, Store, open_store
from control.store.engine import alembic_config, async_url
from control.store.models import Base
from control.store.tenants import hash_token
from tests.postgres import PostgresServer
from tests.store_data import T0, TABLES, conference_fields


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "control.db"  # the parent does not exist yet


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)],
)
async def database_url(request: pytest.FixtureRequest) -> str:
    """A plain URL, as a deployment gives it, of a new empty database on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{request.getfixturevalue('db_path')}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return await server.create_database()


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    store = await open_store(database_url)
    yield store
    await store.close()


def sqlite_tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}


async def scalars(store: Store, sql: str) -> list[Any]:
    async with store.engine.connect() as conn:
        return list((await conn.execute(text(sql))).scalars())


# --- schema ------------------------------------------------------------------------------


async def test_migrations_create_schema_and_reopen_is_idempotent(db_path: Path) -> None:
    store = await open_store(f"sqlite:///{db_path}")
    await store.close()
    assert db_path.exists()
    assert sqlite_tables(db_path) >= TABLES
    store = await open_store(f"sqlite+aiosqlite:///{db_path}")
    async with store.engine.connect() as conn:
        versions = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
        journal = (await conn.execute(text("PRAGMA journal_mode"))).scalar()
        foreign_keys = (await conn.execute(text("PRAGMA foreign_keys"))).scalar()
    await store.close()
    assert versions == [(ScriptDirectory.from_config(alembic_config()).get_current_head(),)]
    assert journal == "wal"
    assert foreign_keys == 1


async def test_migration_matches_models(store: Store) -> None:
    def diff(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)

    async with store.engine.connect() as conn:
        assert await conn.run_sync(diff) == []


def test_plain_urls_get_async_drivers() -> None:
    assert async_url("sqlite:///x.db").drivername == "sqlite+aiosqlite"
    assert async_url("postgresql://u:p@h/db").drivername == "postgresql+asyncpg"
    assert async_url("postgres://u:p@h/db").drivername == "postgresql+asyncpg"
    assert async_url("postgresql+asyncpg://u@h/db").drivername == "postgresql+asyncpg"


async def test_in_memory_database_is_shared_between_sessions() -> None:
    store = await open_store("sqlite://")
    await store.tenants.create_tenant("acme")
    assert [t.name for t in await store.tenants.list_tenants()] == ["acme"]
    await store.close()


# --- tenants and tokens ----------------------------------------------------------------------


async def test_tenants(store: Store) -> None:
    acme = await store.tenants.create_tenant("acme", now=T0)
    await store.tenants.create_tenant("beta")
    with pytest.raises(Conflict):
        await store.tenants.create_tenant("acme")
    assert await store.tenants.get_tenant("acme") == acme
    assert await store.tenants.get_tenant(acme.id) == acme
    assert await store.tenants.get_tenant("nobody") is None
    assert [t.name for t in await store.tenants.list_tenants()] == ["acme", "beta"]
    assert len(acme.id) == 32
    assert acme.created_at == T0


async def test_tokens_are_stored_only_as_hashes(store: Store) -> None:
    acme = await store.tenants.create_tenant("acme")
    beta = await store.tenants.create_tenant("beta")
    token = await store.tenants.create_token(acme.id)
    assert token.startswith("cb_") and len(token) > 40
    assert await store.tenants.tenant_for_token(token) == acme
    assert await store.tenants.tenant_for_token(token + "x") is None
    assert await store.tenants.tenant_for_token("") is None

    await store.tenants.add_token(beta.id, "configured-secret-token")
    await store.tenants.add_token(beta.id, "configured-secret-token")  # idempotent
    assert await store.tenants.tenant_for_token("configured-secret-token") == beta
    with pytest.raises(Conflict):
        await store.tenants.add_token(acme.id, "configured-secret-token")
    with pytest.raises(NotFound):
        await store.tenants.create_token("0" * 32)

    hashes = await scalars(store, "SELECT token_hash FROM api_tokens")
    assert token not in hashes and "configured-secret-token" not in hashes
    assert hash_token(token) in hashes
    assert set(await scalars(store, "SELECT prefix FROM api_tokens")) == {token[:8], "configur"}


async def test_sqlite_files_hold_no_plain_token(db_path: Path) -> None:
    """Not in the database file, nor in its write-ahead log."""
    store = await open_store(f"sqlite:///{db_path}")
    acme = await store.tenants.create_tenant("acme")
    token = await store.tenants.create_token(acme.id)
    await store.tenants.add_token(acme.id, "configured-secret-token")
    await store.close()

    raw = b"".join(p.read_bytes() for p in db_path.parent.glob(f"{db_path.name}*"))
    assert token.encode() not in raw
    assert b"configured-secret-token" not in raw
    assert hash_token(token).encode() in raw


async def test_tokens_may_expire(store: Store) -> None:
    acme = await store.tenants.create_tenant("acme")
    lasting = await store.tenants.create_token(acme.id)
    brief = await store.tenants.create_token(acme.id, now=T0, expires_at=T0 + timedelta(hours=1))
    assert await store.tenants.token_owner(brief, T0) == (acme, False)
    assert await store.tenants.token_owner(brief, T0 + timedelta(hours=1)) == (acme, True)
    assert await store.tenants.tenant_for_token(brief, T0 + timedelta(hours=2)) is None
    assert await store.tenants.tenant_for_token(lasting, T0 + timedelta(days=3650)) == acme
    assert await store.tenants.token_owner("cb_unknown", T0) == (None, False)


# --- conferences -----------------------------------------------------------------------------


async def test_conference_crud(store: Store) -> None:
    acme = await store.tenants.create_tenant("acme")
    start = T0 + timedelta(hours=1)
    created = await store.conferences.create_conference(
        acme.id,
        **conference_fields(
            start_at=start, duration_s=600, max_participants=5, leader="100", callers=["100", "101"]
        ),
    )
    assert created.callers == ("100", "101")
    assert created.end_at == start + timedelta(seconds=600)
    assert not created.locked and not created.warned and not created.manual_answer
    assert await store.conferences.get_conference(acme.id, "room1") == created
    assert await store.conferences.get_conference_by_id(created.id) == created
    assert await store.conferences.conference_by_name("room1") == created

    updated = await store.conferences.update_conference(
        created.id, state="ACTIVE", locked=True, warned=True
    )
    assert (updated.state, updated.locked, updated.warned) == ("ACTIVE", True, True)
    assert updated.callers == ("100", "101")
    assert await store.conferences.get_conference(acme.id, "room1") == updated
    replaced = await store.conferences.update_conference(created.id, callers=["200"])
    assert replaced.callers == ("200",)

    with pytest.raises(ValueError, match="tenant_id"):
        await store.conferences.update_conference(created.id, tenant_id="x")
    with pytest.raises(ValueError, match="access"):
        await store.conferences.update_conference(created.id, access="everyone")
    with pytest.raises(ValueError, match="code"):
        await store.conferences.create_conference(
            acme.id, **conference_fields(name="r2", code="12a")
        )
    with pytest.raises(NotFound):
        await store.conferences.update_conference("0" * 32, locked=True)

    await store.conferences.delete_conference(created.id)
    assert await store.conferences.get_conference(acme.id, "room1") is None
    with pytest.raises(NotFound):
        await store.conferences.delete_conference(created.id)


async def test_end_at_without_start_counts_from_creation(store: Store) -> None:
    acme = await store.tenants.create_tenant("acme")
    conf = await store.conferences.create_conference(acme.id, **conference_fields(duration_s=60))
    assert conf.end_at == T0 + timedelta(seconds=60)
    unlimited = await store.conferences.create_conference(acme.id, **conference_fields(name="r2"))
    assert unlimited.end_at is None


async def test_names_are_unique_across_tenants_until_completed(store: Store) -> None:
    acme = await store.tenants.create_tenant("acme")
    beta = await store.tenants.create_tenant("beta")
    first = await store.conferences.create_conference(acme.id, **conference_fields())
    with pytest.raises(Conflict):
        await store.conferences.create_conference(beta.id, **conference_fields())
    with pytest.raises(Conflict):
        await store.conferences.create_conference(acme.id, **conference_fields())
    other = await store.conferences.create_conference(beta.id, **conference_fields(name="room2"))
    with pytest.raises(Conflict):
        await store.conferences.update_conference(other.id, name="room1")

    # Tenant isolation: beta cannot see acme's room by name.
    assert await store.conferences.get_conference(beta.id, "room1") is None
    assert await store.conferences.get_conference(acme.id, "room2") is None

    ended = await store.conferences.update_conference(
        first.id, state="COMPLETED", ended_at=T0 + timedelta(minutes=5), end_reason="api"
    )
    assert await store.conferences.conference_by_name("room1") is None
    assert (
        await store.conferences.get_conference(acme.id, "room1") == ended
    )  # history stays readable
    reused = await store.conferences.create_conference(
        beta.id, **conference_fields(now=T0 + timedelta(minutes=6))
    )
    assert await store.conferences.conference_by_name("room1") == reused
    assert await store.conferences.get_conference(beta.id, "room1") == reused
    assert await store.conferences.get_conference(acme.id, "room1") == ended
    assert {c.id for c in await store.conferences.open_conferences()} == {reused.id, other.id}
    # Reopening the finished one would make two open rooms of one name.
    with pytest.raises(Conflict):
        await store.conferences.update_conference(first.id, state="ACTIVE")
    # The failed statements above aborted only their own transactions.
    assert len(await store.tenants.list_tenants()) == 2


async def test_pagination(store: Store) -> None:
    acme = await store.tenants.create_tenant("acme")
    beta = await store.tenants.create_tenant("beta")
    for i in range(7):
        await store.conferences.create_conference(
            acme.id, **conference_fields(name=f"r{i}", now=T0 + timedelta(seconds=i))
        )
    await store.conferences.create_conference(beta.id, **conference_fields(name="b0"))
    page, total = await store.conferences.list_conferences(acme.id, offset=0, limit=3)
    assert total == 7 and [c.name for c in page] == ["r0", "r1", "r2"]
    page, total = await store.conferences.list_conferences(acme.id, offset=6, limit=3)
    assert total == 7 and [c.name for c in page] == ["r6"]
    page, total = await store.conferences.list_conferences(beta.id, offset=0, limit=10)
    assert total == 1 and [c.name for c in page] == ["b0"]
    page, total = await store.conferences.list_conferences("0" * 32, offset=0, limit=10)
    assert (page, total) == ([], 0)


async def test_callers(store: Store) -> None:
    acme = await store.tenants.create_tenant("acme")
    conf = await store.conferences.create_conference(acme.id, **conference_fields(access="caller"))
    await store.conferences.add_caller(conf.id, "+4420")
    await store.conferences.add_caller(conf.id, "+4421")
    await store.conferences.add_caller(conf.id, "+4420")  # idempotent
    fetched = await store.conferences.get_conference(acme.id, "room1")
    assert fetched is not None and fetched.callers == ("+4420", "+4421")
    await store.conferences.remove_caller(conf.id, "+4420")
    with pytest.raises(NotFound):
        await store.conferences.remove_caller(conf.id, "+4420")
    with pytest.raises(NotFound):
        await store.conferences.add_caller("0" * 32, "+1")
    page, _ = await store.conferences.list_conferences(acme.id, 0, 10)
    assert page[0].callers == ("+4421",)


async def test_data_survives_a_restart(database_url: str) -> None:
    store = await open_store(database_url)
    acme = await store.tenants.create_tenant("acme")
    token = await store.tenants.create_token(acme.id)
    conf = await store.conferences.create_conference(
        acme.id, **conference_fields(callers=["1"], start_at=T0, duration_s=60)
    )
    await store.close()

    store = await open_store(database_url)
    try:
        assert await store.tenants.tenant_for_token(token) == acme
        assert await store.conferences.open_conferences() == [conf]
    finally:
        await store.close()


async def test_deleting_a_conference_keeps_its_call_records(store: Store) -> None:
    acme = await store.tenants.create_tenant("acme")
    conf = await store.conferences.create_conference(acme.id, **conference_fields(callers=["1"]))
    call = await store.calls.open_call(
        call_id="c1", room="room1", direction="in", caller="1", callee="room1",
        started_at=T0, tenant_id=acme.id, conference_id=conf.id,
    )  # fmt: skip
    await store.conferences.delete_conference(conf.id)
    record = await store.calls.get_call(call)
    assert record is not None and record.conference_id is None and record.room == "room1"
    assert await scalars(store, "SELECT count(*) FROM conference_callers") == [0]  # cascaded


# --- subscriptions and the outbox ------------------------------------------------------------


async def test_subscriptions(store: Store) -> None:
    acme = await store.tenants.create_tenant("acme")
    beta = await store.tenants.create_tenant("beta")
    sub = await store.subscriptions.create_subscription(
        acme.id, "http://127.0.0.1:9/hook", ["a", "b", "a"], T0 + timedelta(hours=1), T0
    )
    assert sub.event_types == ("a", "b")
    assert await store.subscriptions.get_subscription(acme.id, sub.id) == sub
    assert await store.subscriptions.get_subscription(beta.id, sub.id) is None
    assert await store.subscriptions.list_subscriptions(acme.id) == [sub]
    assert await store.subscriptions.list_subscriptions(beta.id) == []

    # Listed oldest first (to the microsecond), expired ones included.
    newer = await store.subscriptions.create_subscription(
        acme.id, "http://h/newer", [], T0 + timedelta(hours=1), T0 + timedelta(microseconds=1)
    )
    expired = await store.subscriptions.create_subscription(
        acme.id, "http://h/expired", [], T0, T0 - timedelta(hours=1)
    )
    assert await store.subscriptions.list_subscriptions(acme.id) == [expired, sub, newer]

    renewed = await store.subscriptions.renew_subscription(acme.id, sub.id, T0 + timedelta(days=1))
    assert renewed.expires_at == T0 + timedelta(days=1)
    with pytest.raises(NotFound):
        await store.subscriptions.renew_subscription(beta.id, sub.id, T0)
    with pytest.raises(NotFound):
        await store.subscriptions.delete_subscription(beta.id, sub.id)
    await store.subscriptions.delete_subscription(acme.id, sub.id)
    assert await store.subscriptions.list_subscriptions(acme.id) == [expired, newer]


async def test_enqueue_filters_by_expiry_and_event_type(store: Store) -> None:
    acme = await store.tenants.create_tenant("acme")
    beta = await store.tenants.create_tenant("beta")
    later = T0 + timedelta(hours=1)
    every = await store.subscriptions.create_subscription(acme.id, "http://h/every", [], later, T0)
    joins = await store.subscriptions.create_subscription(
        acme.id, "http://h/joins", ["joined"], later, T0
    )
    await store.subscriptions.create_subscription(
        acme.id, "http://h/expired", [], T0, T0 - timedelta(hours=1)
    )
    await store.subscriptions.create_subscription(beta.id, "http://h/beta", [], later, T0)

    payload = {"n": 1, "text": "grüße", "nested": {"list": [1, 2.5, None, True]}}
    assert await store.outbox.enqueue_event(acme.id, "joined", payload, T0) == 2
    assert await store.outbox.enqueue_event(acme.id, "left", {"n": 2}, T0) == 1
    assert await store.outbox.enqueue_event(acme.id, "left", {"n": 3}, later) == 0  # all expired
    due = await store.outbox.due_events(T0)
    # Events in order; one event's deliveries to different subscriptions in any order.
    assert [i.payload["n"] for i in due] == [1, 1, 2]
    assert sorted((i.payload["n"], i.callback_url) for i in due) == [
        (1, "http://h/every"),
        (1, "http://h/joins"),
        (2, "http://h/every"),
    ]
    assert due[0].payload == payload  # JSON round trip
    assert {i.subscription_id for i in due} == {every.id, joins.id}
    assert all(i.tenant_id == acme.id and i.attempts == 0 for i in due)
    assert await store.outbox.pending_count() == 3

    await store.subscriptions.renew_subscription(acme.id, every.id, later + timedelta(days=1))
    assert await store.outbox.enqueue_event(acme.id, "left", {"n": 4}, later) == 1  # live again
    assert await store.outbox.pending_count() == 4


async def test_outbox_due_and_mark_flow(store: Store) -> None:
    acme = await store.tenants.create_tenant("acme")
    one = await store.subscriptions.create_subscription(
        acme.id, "http://h/1", [], T0 + timedelta(days=1), T0
    )
    await store.subscriptions.create_subscription(
        acme.id, "http://h/2", [], T0 + timedelta(days=1), T0
    )
    assert await store.outbox.next_due_at() is None
    await store.outbox.enqueue_event(acme.id, "e", {"n": 1}, T0)
    await store.outbox.enqueue_event(acme.id, "e", {"n": 2}, T0 + timedelta(seconds=1))
    assert await store.outbox.due_events(T0 - timedelta(microseconds=1)) == []
    assert len(await store.outbox.due_events(T0)) == 2
    assert len(await store.outbox.due_events(T0 + timedelta(seconds=1))) == 4
    assert len(await store.outbox.due_events(T0 + timedelta(seconds=1), limit=3)) == 3
    assert await store.outbox.next_due_at() == T0

    first_one, first_two, second_one, second_two = await store.outbox.due_events(
        T0 + timedelta(days=1)
    )
    assert first_one.subscription_id == one.id and second_one.subscription_id == one.id

    # Subscription 1's first event fails: its second is held back until the retry is due.
    retry = T0 + timedelta(seconds=30)
    await store.outbox.mark_failed(first_one.id, "HTTP 500 " + "x" * 2000, retry)  # long error kept
    await store.outbox.mark_delivered(first_two.id, T0 + timedelta(seconds=2))
    now = T0 + timedelta(seconds=10)
    assert [i.id for i in await store.outbox.due_events(now)] == [second_two.id]
    await store.outbox.mark_delivered(second_two.id, now)
    assert await store.outbox.next_due_at() == retry  # not the held-back event's earlier time
    assert await store.outbox.pending_count() == 2

    (again, held) = await store.outbox.due_events(retry)
    assert (again.id, again.attempts, again.next_attempt_at) == (first_one.id, 1, retry)
    assert held.id == second_one.id
    await store.outbox.mark_delivered(again.id, retry)
    await store.outbox.mark_failed(held.id, "gave up", None)  # None: given up for good
    assert await store.outbox.pending_count() == 0
    assert await store.outbox.next_due_at() is None
    assert await store.outbox.due_events(T0 + timedelta(days=365)) == []

    assert await store.outbox.purge_outbox(T0 + timedelta(days=1)) == 4
    with pytest.raises(NotFound):
        await store.outbox.mark_delivered(held.id, retry)


async def test_deleting_a_subscription_drops_its_events(store: Store) -> None:
    acme = await store.tenants.create_tenant("acme")
    sub = await store.subscriptions.create_subscription(
        acme.id, "http://h", [], T0 + timedelta(days=1), T0
    )
    await store.outbox.enqueue_event(acme.id, "e", {}, T0)
    await store.subscriptions.delete_subscription(acme.id, sub.id)
    assert await store.outbox.pending_count() == 0


async def test_one_off_notifications_need_no_subscription(store: Store) -> None:
    acme = await store.tenants.create_tenant("acme")
    first = await store.outbox.enqueue_notification(
        acme.id, "http://h/notify", "call", {"n": 1}, T0
    )
    second = await store.outbox.enqueue_notification(
        acme.id, "http://h/notify", "call", {"n": 2}, T0
    )
    due = await store.outbox.due_events(T0)
    assert [(i.id, i.subscription_id, i.callback_url) for i in due] == [
        (first, None, "http://h/notify"),
        (second, None, "http://h/notify"),
    ]
    await store.outbox.mark_failed(first, "HTTP 503", T0 + timedelta(seconds=5))
    # notifications are independent: one failing holds none of the others back
    assert [i.id for i in await store.outbox.due_events(T0)] == [second]


# --- CDRs and time ---------------------------------------------------------------------------


async def test_call_records(store: Store) -> None:
    acme = await store.tenants.create_tenant("acme")
    conf = await store.conferences.create_conference(acme.id, **conference_fields())
    answered = await store.calls.open_call(
        call_id="abc@host", room="room1", direction="in", caller="100", callee="room1",
        started_at=T0, tenant_id=acme.id, conference_id=conf.id,
    )  # fmt: skip
    missed = await store.calls.open_call(
        call_id="def@host", room="room1", direction="out", caller="room1", callee="200",
        started_at=T0 + timedelta(seconds=1), tenant_id=acme.id,
    )  # fmt: skip
    await store.calls.open_call(
        call_id="x", room="r", direction="in", caller="1", callee="r", started_at=T0
    )
    await store.calls.answer_call(answered, T0 + timedelta(seconds=2))
    await store.calls.close_call(answered, T0 + timedelta(seconds=92, milliseconds=500), "bye")
    await store.calls.close_call(missed, T0 + timedelta(seconds=20), "no-answer")
    with pytest.raises(NotFound):
        await store.calls.answer_call("0" * 32, T0)
    with pytest.raises(ValueError, match="direction"):
        await store.calls.open_call(
            call_id="y", room="r", direction="both", caller="1", callee="r", started_at=T0
        )

    calls, total = await store.calls.list_calls(acme.id, 0, 10)
    assert total == 2
    assert [c.call_id for c in calls] == ["abc@host", "def@host"]
    assert calls[0].duration_s == 90.5 and calls[0].end_reason == "bye"
    assert calls[1].duration_s == 0 and calls[1].answered_at is None
    assert await store.calls.list_calls(acme.id, 1, 1) == ([calls[1]], 2)
    assert [c.id for c in calls] == [answered, missed]
    assert (await store.calls.list_calls(acme.id, 0, 10, conference_id=conf.id))[1] == 1
    _, total = await store.calls.list_calls(None, 0, 10)
    assert total == 1


async def test_times_round_trip_as_aware_utc(store: Store) -> None:
    plus_two = timezone(timedelta(hours=2))
    local = datetime(2030, 6, 1, 14, 0, 0, 123456, tzinfo=plus_two)
    acme = await store.tenants.create_tenant("acme", now=local)
    conf = await store.conferences.create_conference(
        acme.id, **conference_fields(start_at=local, duration_s=90, now=local)
    )
    ended_at = datetime(2030, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    await store.conferences.update_conference(conf.id, ended_at=ended_at)
    fetched = await store.conferences.get_conference_by_id(conf.id)
    tenant = await store.tenants.get_tenant("acme")
    assert fetched is not None and tenant is not None
    for value in (tenant.created_at, fetched.start_at, fetched.created_at):
        assert value == local
        assert value is not None and value.tzinfo == UTC and value.hour == 12
        assert value.microsecond == 123456
    assert fetched.ended_at == ended_at
    assert fetched.ended_at is not None and fetched.ended_at.tzinfo == UTC
    assert fetched.ended_at.microsecond == 999999
    assert fetched.end_at == local + timedelta(seconds=90)
    with pytest.raises(StatementError, match="naive"):
        await store.tenants.create_tenant("naive", now=datetime(2030, 1, 1))
