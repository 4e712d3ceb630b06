"""/v1/conferences: create, get, list, modify, remove; caller lists; participants. Each route
reads its request, calls a use case and shapes the answer; refusals are domain errors, answered
as `{code, message, description}` by the app's handler."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from control.api.auth import PlaneDep, TenantDep
from control.api.paging import PageDep, counted
from control.api.schemas import (
    CallerAdd,
    ConferenceCreate,
    ConferenceUpdate,
    ParticipantTransfer,
    ParticipantUpdate,
)
from control.api.views import conference_view, participant_view
from control.usecases import callers, conferences, participants
from control.usecases.conferences import NewConference

router = APIRouter(prefix="/v1/conferences", tags=["conferences"])


@router.post("", status_code=201)
async def create_conference(
    body: ConferenceCreate, tenant: TenantDep, plane: PlaneDep
) -> dict[str, Any]:
    conference = await conferences.create(plane, tenant, NewConference(**body.model_dump()))
    return conference_view(plane, conference)


@router.get("")
async def list_conferences(
    response: Response, tenant: TenantDep, plane: PlaneDep, paging: PageDep
) -> list[dict[str, Any]]:
    items, total = await conferences.page(plane, tenant, paging.offset, paging.limit)
    return [conference_view(plane, c) for c in counted(response, items, total)]


@router.get("/{name}")
async def get_conference(name: str, tenant: TenantDep, plane: PlaneDep) -> dict[str, Any]:
    return conference_view(plane, await conferences.find(plane, tenant, name))


@router.patch("/{name}")
async def modify_conference(
    name: str, body: ConferenceUpdate, tenant: TenantDep, plane: PlaneDep
) -> dict[str, Any]:
    given = body.model_dump(exclude_unset=True)
    return conference_view(plane, await conferences.modify(plane, tenant, name, given))


@router.delete("/{name}", status_code=204)
async def remove_conference(name: str, tenant: TenantDep, plane: PlaneDep) -> Response:
    await conferences.end(plane, await conferences.find(plane, tenant, name))
    return Response(status_code=204)


@router.get("/{name}/callers")
async def list_callers(name: str, tenant: TenantDep, plane: PlaneDep) -> list[str]:
    return callers.listed(await conferences.find(plane, tenant, name))


@router.post("/{name}/callers", status_code=201)
async def add_caller(
    name: str, body: CallerAdd, tenant: TenantDep, plane: PlaneDep
) -> dict[str, Any]:
    conference = await conferences.find(plane, tenant, name)
    return conference_view(plane, await callers.add(plane, conference, body.number))


@router.delete("/{name}/callers/{number}", status_code=204)
async def remove_caller(name: str, number: str, tenant: TenantDep, plane: PlaneDep) -> Response:
    await callers.remove(plane, await conferences.find(plane, tenant, name), number)
    return Response(status_code=204)


# --- participants ---------------------------------------------------------------------------


@router.get("/{name}/participants")
async def list_participants(name: str, tenant: TenantDep, plane: PlaneDep) -> list[dict[str, Any]]:
    conference = await conferences.find(plane, tenant, name)
    return [participant_view(p) for p in participants.in_conference(plane, conference)]


@router.get("/{name}/participants/{participant_id}")
async def get_participant(
    name: str, participant_id: str, tenant: TenantDep, plane: PlaneDep
) -> dict[str, Any]:
    conference = await conferences.find_open(plane, tenant, name)
    return participant_view(participants.find(plane, conference, participant_id))


@router.patch("/{name}/participants/{participant_id}")
async def set_participant_options(
    name: str, participant_id: str, body: ParticipantUpdate, tenant: TenantDep, plane: PlaneDep
) -> dict[str, Any]:
    conference = await conferences.find_open(plane, tenant, name)
    given = body.model_dump(exclude_unset=True, exclude_none=True)
    return participant_view(participants.update(plane, conference, participant_id, given))


@router.post("/{name}/participants/{participant_id}/transfer", status_code=202)
async def transfer_participant(
    name: str, participant_id: str, body: ParticipantTransfer, tenant: TenantDep, plane: PlaneDep
) -> dict[str, Any]:
    """Blind transfer by REFER: 202, the participant leaves once connected to the target."""
    conference = await conferences.find_open(plane, tenant, name)
    participants.transfer(plane, conference, participant_id, body.target)
    return {"participant": participant_id, "target": body.target, "status": "transferring"}


@router.delete("/{name}/participants/{participant_id}", status_code=204)
async def eject_participant(
    name: str, participant_id: str, tenant: TenantDep, plane: PlaneDep
) -> Response:
    conference = await conferences.find_open(plane, tenant, name)
    participants.eject(plane, conference, participant_id)
    return Response(status_code=204)
