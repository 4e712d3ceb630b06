"""Webhook delivery from the store's persistent outbox.

Events are rows (control.store) before anyone tries to send them, so a crash or restart loses
nothing: delivery is at least once, and receivers de-duplicate by the event `id`. One task
sends what is due, then sleeps until the next retry is due or `wake()` says new events were
queued. Subscriptions are served concurrently, but each one in order: while its event N waits
for a retry, N+1 is not sent.

Retries back off exponentially: 1 s, 2 s, 4 s, ... capped at 5 minutes, and an event is given
up after 20 failed attempts (about an hour of trying: 511 s for the first 10, then 300 s each).
It then stays in the table with `next_attempt_at` NULL and its last error, and stops holding
back the subscription's later events.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import structlog

from control.store import OutboxItem, Store

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]
USER_AGENT = "confbridge-webhooks/1"
FORM_NOTIFICATION = "call.notification.form"  # payload is sent as form fields, not JSON
MAX_IDLE_S = 60.0  # re-check the table at least this often, whatever the next due time


@dataclass(frozen=True)
class Backoff:
    initial_s: float = 1.0
    factor: float = 2.0
    max_s: float = 300.0
    max_attempts: int = 20

    def delay_s(self, attempts: int) -> float:
        """Wait after the `attempts`-th failed attempt (1 = the first failure)."""
        exponent = min(max(0, attempts - 1), 64)  # no float overflow however many attempts
        return min(self.max_s, self.initial_s * self.factor**exponent)


DEFAULT_BACKOFF = Backoff()


def utcnow() -> datetime:
    return datetime.now(UTC)


def next_attempt(attempts: int, now: datetime, backoff: Backoff = DEFAULT_BACKOFF) -> datetime:
    """When to try again after `attempts` failed attempts, the last one at `now`."""
    return now + timedelta(seconds=backoff.delay_s(attempts))


def webhook_body(item: OutboxItem) -> dict[str, Any]:
    return {
        "id": item.id,
        "type": item.event_type,
        "tenant": item.tenant_id,
        "created_at": item.created_at.isoformat(),
        "data": item.payload,
    }


class WebhookDeliverer:
    """Sends the outbox's due events; run it as one task (`start()` or `await run()`)."""

    def __init__(
        self,
        store: Store,
        client: httpx.AsyncClient | None = None,
        *,
        clock: Clock = utcnow,
        backoff: Backoff = DEFAULT_BACKOFF,
        timeout_s: float = 5.0,
        batch: int = 100,
        concurrency: int = 8,
    ) -> None:
        self._store = store
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(headers={"User-Agent": USER_AGENT})
        self._clock = clock
        self._backoff = backoff
        self._timeout_s = timeout_s
        self._batch = batch
        self._sending = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """New events were queued: look now rather than at the next due time."""
        self._wake.set()

    async def publish(self, tenant_id: str, event_type: str, payload: dict[str, Any]) -> int:
        """Queue an event for the tenant's subscribers and wake the sender; returns how many
        deliveries were queued."""
        outbox = self._store.outbox
        count = await outbox.enqueue_event(tenant_id, event_type, payload, self._clock())
        if count:
            self.wake()
        return count

    def start(self) -> asyncio.Task[None]:
        return asyncio.create_task(self.run(), name="webhook-deliverer")

    async def run(self) -> None:
        self._task = asyncio.current_task()
        while not self._stopping:
            self._wake.clear()  # before reading, so an enqueue during the pass is not missed
            try:
                fetched = await self.deliver_due()
                if fetched >= self._batch:
                    continue  # a full batch: more may be due right now
                delay = await self._idle_delay(fetched)
            except Exception:
                log.exception("webhook.loop_error")
                delay = self._backoff.initial_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Let a send in progress finish (up to `timeout_s`), then end `run()`. An event cut
        off mid-send stays pending and is sent again later."""
        self._stopping = True
        self._wake.set()
        task = self._task
        if task is not None and task is not asyncio.current_task() and not task.done():
            done, _ = await asyncio.wait({task}, timeout=timeout_s)
            if not done:
                task.cancel()
                await asyncio.wait({task})
        if self._own_client:
            await self._client.aclose()

    async def deliver_due(self) -> int:
        """One pass: send every due event, each subscription's in order; returns how many
        events were due."""
        items = await self._store.outbox.due_events(self._clock(), self._batch)
        queues: dict[str, list[OutboxItem]] = {}
        for item in items:
            queues.setdefault(item.subscription_id, []).append(item)
        await asyncio.gather(*(self._deliver_in_order(queue) for queue in queues.values()))
        return len(items)

    async def _deliver_in_order(self, queue: list[OutboxItem]) -> None:
        for item in queue:
            if self._stopping or not await self._deliver(item):
                return  # the rest wait behind this one's retry

    async def _deliver(self, item: OutboxItem) -> bool:
        """Send one event; False when it failed and will be retried."""
        error = await self._post(item)
        now = self._clock()
        if error is None:
            await self._store.outbox.mark_delivered(item.id, now)
            log.info(
                "webhook.delivered",
                id=item.id,
                type=item.event_type,
                subscription=item.subscription_id,
                attempts=item.attempts + 1,
            )
            return True
        attempts = item.attempts + 1
        retry_at = None
        if attempts < self._backoff.max_attempts:
            retry_at = next_attempt(attempts, now, self._backoff)
        await self._store.outbox.mark_failed(item.id, error, retry_at)
        log.warning(
            "webhook.failed",
            id=item.id,
            type=item.event_type,
            subscription=item.subscription_id,
            url=item.callback_url,
            attempts=attempts,
            error=error,
            retry_at=retry_at.isoformat() if retry_at else None,
            gave_up=retry_at is None,
        )
        return retry_at is None

    async def _post(self, item: OutboxItem) -> str | None:
        """POST the event; None on a 2xx answer, else what went wrong."""
        try:
            async with self._sending:
                headers = {"X-Webhook-Id": str(item.id), "X-Webhook-Type": item.event_type}
                if item.event_type == FORM_NOTIFICATION:
                    content: dict[str, Any] = {"data": item.payload}
                else:
                    content = {"json": webhook_body(item)}
                response = await self._client.post(
                    item.callback_url, headers=headers, timeout=self._timeout_s, **content
                )
        except Exception as exc:  # connection refused, timeout, bad URL: all one failure
            return f"{type(exc).__name__}: {exc}".rstrip(": ")
        if response.is_success:
            return None
        return f"HTTP {response.status_code}"

    async def _idle_delay(self, fetched: int) -> float:
        """Seconds until the next event is due (capped), or MAX_IDLE_S when none is."""
        due = await self._store.outbox.next_due_at()
        if due is None:
            return MAX_IDLE_S
        delay = min(MAX_IDLE_S, (due - self._clock()).total_seconds())
        # Nothing was due a moment ago: never spin on a due time at (or just past) now.
        return max(delay, 0.0 if fetched else 0.01)
