"""Bearer tokens: an application's (tenant) token, or the admin token from the config."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from control.api.errors import ApiError
from control.plane import ControlPlane
from control.store.records import Tenant


def plane_of(request: Request) -> ControlPlane:
    plane: ControlPlane = request.app.state.plane
    return plane


def _bearer(request: Request) -> str:
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


def is_admin(plane: ControlPlane, token: str) -> bool:
    admin = plane.config.control.admin_token
    return bool(admin) and hmac.compare_digest(admin.encode(), token.encode())


async def tenant_of_token(plane: ControlPlane, token: str) -> Tenant:
    tenant, expired = await plane.store.token_owner(token, plane.clock())
    if tenant is None:
        raise ApiError(401, "unauthorized", "invalid token")
    if expired:
        raise ApiError(
            401,
            "expired_credentials",
            "Expired credentials",
            "The token has expired: ask for a new one.",
        )
    return tenant


async def current_tenant(request: Request) -> Tenant:
    return await tenant_of_token(plane_of(request), _bearer(request))


async def require_admin(request: Request) -> None:
    if not is_admin(plane_of(request), _bearer(request)):
        raise ApiError(401, "unauthorized", "admin token required")


async def tenant_or_admin(request: Request) -> Tenant | None:
    """For the live event stream: a tenant sees its own events, the admin sees all (None)."""
    token = _bearer(request)
    plane = plane_of(request)
    if is_admin(plane, token):
        return None
    return await tenant_of_token(plane, token)


TenantDep = Annotated[Tenant, Depends(current_tenant)]
PlaneDep = Annotated[ControlPlane, Depends(plane_of)]
