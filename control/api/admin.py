"""/v1/admin: applications (tenants) and their API tokens, behind the config's admin token."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import ValidationError

from control.api.auth import PlaneDep, require_admin
from control.api.errors import ApiError, invalid
from control.api.schemas import ApplicationCreate, TokenCreate
from control.events import iso
from control.store.errors import Conflict

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require_admin)])


@router.post("/applications", status_code=201)
async def create_application(body: ApplicationCreate, plane: PlaneDep) -> dict[str, Any]:
    try:
        tenant = await plane.store.tenants.create_tenant(body.name)
    except Conflict:
        raise ApiError(409, "conflict", f"name: application {body.name!r} exists") from None
    return {"id": tenant.id, "name": tenant.name, "created_at": iso(tenant.created_at)}


@router.get("/applications")
async def list_applications(plane: PlaneDep) -> list[dict[str, Any]]:
    return [
        {"id": t.id, "name": t.name, "created_at": iso(t.created_at)}
        for t in await plane.store.tenants.list_tenants()
    ]


@router.post("/applications/{name}/tokens", status_code=201)
async def create_token(
    name: str, plane: PlaneDep, body: TokenCreate | None = None
) -> dict[str, Any]:
    """A new token for the application, created with it when it does not exist yet. The token
    is shown once: only its hash is stored."""
    tenant = await plane.store.tenants.get_tenant(name)
    if tenant is None:
        try:
            ApplicationCreate(name=name)
        except ValidationError:
            raise invalid("name", "must be 1-64 of A-Za-z0-9._-") from None
        tenant = await plane.store.tenants.create_tenant(name)
    expires_at = None
    if body is not None and body.expires_in_s is not None:
        expires_at = plane.clock() + timedelta(seconds=body.expires_in_s)
    token = await plane.store.tenants.create_token(
        tenant.id, now=plane.clock(), expires_at=expires_at
    )
    return {
        "application": tenant.name,
        "application_id": tenant.id,
        "token": token,
        "expires_at": iso(expires_at),
    }
