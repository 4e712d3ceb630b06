"""Bearer tokens for the native API: an application's (tenant) token, or the admin token from
the config. The lookup and expiry check are the use case's (`control.usecases.auth`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from control.api.errors import ApiError
from control.plane import ControlPlane
from control.store.records import Tenant
from control.usecases.auth import authenticate, check_admin, is_admin


def plane_of(request: Request) -> ControlPlane:
    plane: ControlPlane = request.app.state.plane
    return plane


def bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401,
            "unauthorized",
            "missing bearer token",
            "Send 'Authorization: Bearer <token>' with an application's API token.",
        )
    return token.strip()


async def current_tenant(request: Request) -> Tenant:
    return await authenticate(plane_of(request), bearer(request))


async def require_admin(request: Request) -> None:
    if not check_admin(plane_of(request), bearer(request)):
        raise ApiError(401, "unauthorized", "admin token required")


async def tenant_or_admin(request: Request) -> Tenant | None:
    """For the live event stream: a tenant sees its own events, the admin sees all (None)."""
    token = bearer(request)
    plane = plane_of(request)
    if is_admin(plane, token):
        return None
    return await authenticate(plane, token)


TenantDep = Annotated[Tenant, Depends(current_tenant)]
PlaneDep = Annotated[ControlPlane, Depends(plane_of)]
