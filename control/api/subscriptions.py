"""/v1/subscriptions (webhooks, as the Teaming document's subscriptions: callback URL, event
types, expiry, renew, delete), /v1/events (live Server-Sent Events) and /v1/calls (CDRs)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse

from control.api.auth import PlaneDep, TenantDep, tenant_or_admin
from control.api.errors import invalid, not_found
from control.api.paging import PageDep, counted
from control.api.schemas import SubscriptionCreate, SubscriptionRenew
from control.api.views import call_view, subscription_view
from control.events import EVENT_TYPES
from control.store.records import Tenant

router = APIRouter(prefix="/v1", tags=["events"])
KEEPALIVE_S = 15.0


@router.post("/subscriptions", status_code=201)
async def create_subscription(
    body: SubscriptionCreate, tenant: TenantDep, plane: PlaneDep
) -> dict[str, Any]:
    now = plane.clock()
    subscription = await plane.store.subscriptions.create_subscription(
        tenant.id,
        str(body.callback_url),
        body.events,
        now + timedelta(seconds=body.expires_in_s),
        now,
    )
    return subscription_view(subscription)


@router.get("/subscriptions")
async def list_subscriptions(tenant: TenantDep, plane: PlaneDep) -> list[dict[str, Any]]:
    return [
        subscription_view(s) for s in await plane.store.subscriptions.list_subscriptions(tenant.id)
    ]


@router.get("/subscriptions/{subscription_id}")
async def get_subscription(
    subscription_id: str, tenant: TenantDep, plane: PlaneDep
) -> dict[str, Any]:
    subscription = await plane.store.subscriptions.get_subscription(tenant.id, subscription_id)
    if subscription is None:
        raise not_found(f"subscription {subscription_id!r}")
    return subscription_view(subscription)


@router.put("/subscriptions/{subscription_id}")
async def renew_subscription(
    subscription_id: str, body: SubscriptionRenew, tenant: TenantDep, plane: PlaneDep
) -> dict[str, Any]:
    if await plane.store.subscriptions.get_subscription(tenant.id, subscription_id) is None:
        raise not_found(f"subscription {subscription_id!r}")
    expires = plane.clock() + timedelta(seconds=body.expires_in_s)
    return subscription_view(
        await plane.store.subscriptions.renew_subscription(tenant.id, subscription_id, expires)
    )


@router.delete("/subscriptions/{subscription_id}", status_code=204)
async def delete_subscription(subscription_id: str, tenant: TenantDep, plane: PlaneDep) -> Response:
    if await plane.store.subscriptions.get_subscription(tenant.id, subscription_id) is None:
        raise not_found(f"subscription {subscription_id!r}")
    await plane.store.subscriptions.delete_subscription(tenant.id, subscription_id)
    return Response(status_code=204)


@router.get("/events")
async def watch_events(
    request: Request,
    plane: PlaneDep,
    tenant: Annotated[Tenant | None, Depends(tenant_or_admin)],
    types: str = Query("", description="comma-separated event types; empty for all"),
) -> StreamingResponse:
    wanted = frozenset(t for t in types.split(",") if t)
    unknown = sorted(wanted - set(EVENT_TYPES))
    if unknown:
        raise invalid("types", f"unknown event types {unknown}")
    watcher = plane.broker.watch(tenant.id if tenant else None, wanted)

    async def stream() -> AsyncIterator[bytes]:
        try:
            yield b": connected\n\n"
            while True:
                try:
                    event = await asyncio.wait_for(watcher.queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield b": keepalive\n\n"
                    continue
                data = json.dumps(event.payload, separators=(",", ":"))
                yield f"event: {event.type}\ndata: {data}\n\n".encode()
        finally:
            plane.broker.unwatch(watcher)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/calls")
async def list_calls(
    response: Response, tenant: TenantDep, plane: PlaneDep, paging: PageDep
) -> list[dict[str, Any]]:
    records, total = await plane.store.calls.list_calls(tenant.id, paging.offset, paging.limit)
    return [call_view(r) for r in counted(response, records, total)]
