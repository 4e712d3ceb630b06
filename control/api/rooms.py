"""/v1/rooms: a tenant's live rooms, with their participants: its conferences' rooms and the
rooms made by dialling one of its `[[application]] dial_in` names (which have no conference).
Another tenant's room, or a room that is nobody's, is a 404 like a missing one."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from control.api.auth import PlaneDep, TenantDep
from control.api.schemas import ParticipantUpdate
from control.api.views import participant_view
from control.usecases import participants, rooms

router = APIRouter(prefix="/v1/rooms", tags=["rooms"])


@router.get("")
async def list_rooms(tenant: TenantDep, plane: PlaneDep) -> list[dict[str, Any]]:
    return [
        {
            "name": room.name,
            "origin": room.origin,
            "conference_id": room.conference_id,
            "participants": room.participants,
            "ringing": room.ringing,
        }
        for room in rooms.of_tenant(plane, tenant)
    ]


@router.get("/{room}/participants")
async def room_participants(room: str, tenant: TenantDep, plane: PlaneDep) -> list[dict[str, Any]]:
    rooms.find_own(plane, tenant, room)
    return [participant_view(p) for p in plane.bridge.participants(room)]


@router.patch("/{room}/participants/{participant_id}")
async def set_room_participant(
    room: str, participant_id: str, body: ParticipantUpdate, tenant: TenantDep, plane: PlaneDep
) -> dict[str, Any]:
    rooms.find_own(plane, tenant, room)
    given = body.model_dump(exclude_unset=True, exclude_none=True)
    return participant_view(participants.update_in(plane, room, participant_id, given))


@router.delete("/{room}/participants/{participant_id}", status_code=204)
async def eject_room_participant(
    room: str, participant_id: str, tenant: TenantDep, plane: PlaneDep
) -> Response:
    rooms.find_own(plane, tenant, room)
    participants.eject_from(plane, room, participant_id)
    return Response(status_code=204)
