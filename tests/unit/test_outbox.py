"""Webhook delivery against a real HTTP receiver on 127.0.0.1 and a real SQLite outbox:
order, retries with backoff, receiver down then up, restart, expiry, giving up."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from control.outbox import Backoff, WebhookDeliverer, next_attempt
from control.store import Store, open_store
from tests.receiver import Receiver

T0 = datetime(2030, 1, 1, tzinfo=UTC)
FAST = Backoff(initial_s=0.02, factor=2.0, max_s=0.1, max_attempts=50)


def free_port() -> int:
    """A port nobody listens on (yet)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def eventually(condition: Callable[[], Any], timeout_s: float = 5.0) -> None:
    """Poll until `condition()` (sync or async) is true."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def attempts(store: Store) -> int:
    async with store.engine.connect() as conn:
        return int((await conn.execute(text("SELECT sum(attempts) FROM outbox"))).scalar() or 0)


async def tried(store: Store, minimum: int) -> bool:
    """True once the deliverer has made at least `minimum` attempts in all."""
    return await attempts(store) >= minimum


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'control.db'}"


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    store = await open_store(db_url)
    yield store
    await store.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    await receiver.start()
    yield receiver
    await receiver.close()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as client:  # no proxy for 127.0.0.1
        yield client


class Running:
    """A deliverer running as a task, stopped (and checked for errors) on exit."""

    def __init__(self, deliverer: WebhookDeliverer) -> None:
        self.deliverer = deliverer

    async def __aenter__(self) -> WebhookDeliverer:
        self.task = self.deliverer.start()
        return self.deliverer

    async def __aexit__(self, *exc: object) -> None:
        await self.deliverer.stop()
        assert self.task.done()
        self.task.result()


async def subscribe(store: Store, url: str, types: list[str] | None = None) -> str:
    tenant = await store.tenants.get_tenant("acme") or await store.tenants.create_tenant("acme")
    await store.subscriptions.create_subscription(
        tenant.id, url, types or [], now() + timedelta(hours=1), now()
    )
    return tenant.id


# --- backoff arithmetic ----------------------------------------------------------------------


def test_next_attempt_backs_off_exponentially_up_to_the_cap() -> None:
    delays = [(next_attempt(n, T0) - T0).total_seconds() for n in range(1, 12)]
    assert delays == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    assert next_attempt(10_000, T0) == T0 + timedelta(minutes=5)  # no overflow
    assert next_attempt(0, T0) == T0 + timedelta(seconds=1)
    custom = Backoff(initial_s=0.5, factor=3, max_s=10)
    assert [custom.delay_s(n) for n in (1, 2, 3, 4)] == [0.5, 1.5, 4.5, 10]
    total = sum(Backoff().delay_s(n) for n in range(1, Backoff().max_attempts))
    assert 3000 < total < 4000  # about an hour of retries before giving up


# --- delivery --------------------------------------------------------------------------------


async def test_events_are_delivered_in_order(
    store: Store, receiver: Receiver, client: httpx.AsyncClient
) -> None:
    tenant_id = await subscribe(store, receiver.url())
    async with Running(WebhookDeliverer(store, client, backoff=FAST)) as deliverer:
        for n in range(5):
            assert await deliverer.publish(tenant_id, "participant.joined", {"n": n}) == 1
        await eventually(lambda: len(receiver.delivered) == 5)
    bodies = receiver.delivered
    assert [b["data"]["n"] for b in bodies] == [0, 1, 2, 3, 4]
    assert [b["id"] for b in bodies] == sorted(b["id"] for b in bodies)
    first = bodies[0]
    assert first["type"] == "participant.joined" and first["tenant"] == tenant_id
    assert datetime.fromisoformat(first["created_at"]).tzinfo is not None
    assert await store.outbox.pending_count() == 0


async def test_failures_are_retried_in_order_then_delivered(
    store: Store, receiver: Receiver, client: httpx.AsyncClient
) -> None:
    receiver.fail = 3
    tenant_id = await subscribe(store, receiver.url())
    for n in range(3):
        await store.outbox.enqueue_event(tenant_id, "e", {"n": n}, now())
    started = asyncio.get_running_loop().time()
    async with Running(WebhookDeliverer(store, client, backoff=FAST)):
        await eventually(lambda: len(receiver.delivered) == 3)
    elapsed = asyncio.get_running_loop().time() - started
    # Event 0 failed three times before anything else was sent; then 0, 1, 2 in order.
    sent = [(status, body["data"]["n"]) for status, _, body in receiver.requests]
    assert sent == [(500, 0), (500, 0), (500, 0), (204, 0), (204, 1), (204, 2)]
    assert elapsed >= 0.02 + 0.04 + 0.08  # the backoff was waited out
    assert await store.outbox.pending_count() == 0


async def test_receiver_down_then_up(store: Store, client: httpx.AsyncClient) -> None:
    receiver = Receiver()
    port = free_port()
    tenant_id = await subscribe(store, f"http://127.0.0.1:{port}/hook")
    async with Running(WebhookDeliverer(store, client, backoff=FAST)) as deliverer:
        await deliverer.publish(tenant_id, "e", {"n": 1})
        await deliverer.publish(tenant_id, "e", {"n": 2})
        await eventually(lambda: tried(store, 3))
        await receiver.start(port)
        try:
            await eventually(lambda: len(receiver.delivered) == 2)
        finally:
            await receiver.close()
    assert [b["data"]["n"] for b in receiver.delivered] == [1, 2]


async def test_pending_events_are_delivered_after_a_restart(
    db_url: str, client: httpx.AsyncClient
) -> None:
    port = free_port()
    store = await open_store(db_url)
    tenant_id = await subscribe(store, f"http://127.0.0.1:{port}/hook")
    async with Running(WebhookDeliverer(store, client, backoff=FAST)) as deliverer:
        for n in range(3):
            await deliverer.publish(tenant_id, "e", {"n": n})
        await eventually(lambda: tried(store, 2))
    await store.close()

    receiver = Receiver()
    await receiver.start(port)
    store = await open_store(db_url)
    try:
        assert await store.outbox.pending_count() == 3
        async with Running(WebhookDeliverer(store, client, backoff=FAST)):
            await eventually(lambda: len(receiver.delivered) == 3)
        assert [b["data"]["n"] for b in receiver.delivered] == [0, 1, 2]
        assert await store.outbox.pending_count() == 0
    finally:
        await receiver.close()
        await store.close()


async def test_expired_subscription_gets_nothing(
    store: Store, receiver: Receiver, client: httpx.AsyncClient
) -> None:
    tenant = await store.tenants.create_tenant("acme")
    await store.subscriptions.create_subscription(
        tenant.id, receiver.url("/expired"), [], now() - timedelta(seconds=1), T0
    )
    await store.subscriptions.create_subscription(
        tenant.id, receiver.url("/left-only"), ["left"], now() + timedelta(hours=1), now()
    )
    await store.subscriptions.create_subscription(
        tenant.id, receiver.url("/live"), [], now() + timedelta(hours=1), now()
    )
    async with Running(WebhookDeliverer(store, client, backoff=FAST)) as deliverer:
        assert await deliverer.publish(tenant.id, "joined", {"n": 1}) == 1
        await eventually(lambda: len(receiver.delivered) == 1)
        await asyncio.sleep(0.1)  # time for any wrong delivery to show up
    assert [path for _, path, _ in receiver.requests] == ["/live"]


async def test_gives_up_after_max_attempts_and_moves_on(
    store: Store, receiver: Receiver, client: httpx.AsyncClient
) -> None:
    receiver.fail = 2
    tenant_id = await subscribe(store, receiver.url())
    backoff = Backoff(initial_s=0.01, factor=1, max_s=0.01, max_attempts=2)
    async with Running(WebhookDeliverer(store, client, backoff=backoff)) as deliverer:
        await deliverer.publish(tenant_id, "e", {"n": 1})
        await deliverer.publish(tenant_id, "e", {"n": 2})
        await eventually(lambda: len(receiver.delivered) == 1)
    sent = [(status, body["data"]["n"]) for status, _, body in receiver.requests]
    assert sent == [(500, 1), (500, 1), (204, 2)]
    assert await store.outbox.pending_count() == 0
    async with store.engine.connect() as conn:
        row = (await conn.execute(text("SELECT last_error FROM outbox ORDER BY id"))).first()
    assert row is not None and row[0] == "HTTP 500"


async def test_unreachable_url_is_a_failure_not_a_crash(
    store: Store, client: httpx.AsyncClient
) -> None:
    tenant_id = await subscribe(store, "not a url")
    async with Running(WebhookDeliverer(store, client, backoff=FAST)) as deliverer:
        await deliverer.publish(tenant_id, "e", {})
        await eventually(lambda: tried(store, 2))
    assert await store.outbox.pending_count() == 1
