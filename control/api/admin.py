"""/v1/admin: applications (tenants) and their API tokens, and every live room of the bridge
(rooms made by dialling too) with its participants, behind the config's admin token."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends, Response
from pydantic import ValidationError

from control.api.auth import PlaneDep, require_admin
from control.api.errors import ApiError, invalid
from control.api.schemas import ApplicationCreate, ParticipantUpdate, TokenCreate
from control.api.views import participant_view
from control.events import iso
from control.store.errors import Conflict
from control.usecases import participants, rooms

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


# --- the operator's rooms -----------------------------------------------------------------------


@router.get("/rooms")
async def list_rooms(plane: PlaneDep) -> list[dict[str, Any]]:
    """Every room the bridge has now: tenants' conferences, configured rooms and rooms made by
    dialling a free name (which no tenant's token sees)."""
    tenants = {t.id: t.name for t in await plane.store.tenants.list_tenants()}
    return [
        {
            "name": room.name,
            "origin": room.origin,
            "application": tenants.get(room.tenant_id) if room.tenant_id else None,
            "conference_id": room.conference_id,
            "participants": room.participants,
            "ringing": room.ringing,
        }
        for room in rooms.live(plane)
    ]


@router.get("/rooms/{room}/participants")
async def room_participants(room: str, plane: PlaneDep) -> list[dict[str, Any]]:
    return [participant_view(p) for p in rooms.members(plane, room)]


@router.patch("/rooms/{room}/participants/{participant_id}")
async def set_room_participant(
    room: str, participant_id: str, body: ParticipantUpdate, plane: PlaneDep
) -> dict[str, Any]:
    given = body.model_dump(exclude_unset=True, exclude_none=True)
    return participant_view(participants.update_in(plane, room, participant_id, given))


@router.delete("/rooms/{room}/participants/{participant_id}", status_code=204)
async def eject_room_participant(room: str, participant_id: str, plane: PlaneDep) -> Response:
    participants.eject_from(plane, room, participant_id)
    return Response(status_code=204)
