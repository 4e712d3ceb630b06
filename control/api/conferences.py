"""/v1/conferences: create, get, list, modify, remove; caller lists; participants."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Response

from control.api.auth import PlaneDep, TenantDep
from control.api.errors import ApiError, invalid, not_found
from control.api.paging import PageDep, counted
from control.api.schemas import CallerAdd, ConferenceCreate, ConferenceUpdate, ParticipantUpdate
from control.api.views import conference_view, participant_view
from control.plane import ControlPlane
from control.schedule import ConferenceState
from control.store.errors import Conflict
from control.store.records import Conference, Tenant

router = APIRouter(prefix="/v1/conferences", tags=["conferences"])
START_SLACK = timedelta(seconds=60)  # a start "now" computed on a slow client is not the past


def as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def new_code() -> str:
    return f"{secrets.randbelow(10**6):06d}"


def new_name() -> str:
    return f"c{secrets.randbelow(10**9):09d}"


async def find(plane: ControlPlane, tenant: Tenant, name: str) -> Conference:
    conference = await plane.store.get_conference(tenant.id, name)
    if conference is None:
        raise not_found(f"conference {name!r}")
    return conference


def check_start(plane: ControlPlane, start: datetime | None) -> datetime | None:
    if start is None:
        return None
    start = as_utc(start)
    if start < plane.clock() - START_SLACK:
        raise invalid("start_time", "is in the past")
    return start


@router.post("", status_code=201)
async def create_conference(
    body: ConferenceCreate, tenant: TenantDep, plane: PlaneDep
) -> dict[str, Any]:
    start = check_start(plane, body.start_time)
    if body.access == "caller" and not body.callers:
        raise invalid("callers", "access 'caller' needs at least one caller")
    code = body.code
    if body.access in ("room", "room+caller") and code is None:
        code = new_code()
    name = body.name or new_name()
    if name in {r.name for r in plane.config.room} or name in plane.config.rooms.names:
        raise ApiError(409, "conflict", f"name: {name!r} is a room of the configuration file")
    try:
        conference = await plane.store.create_conference(
            tenant.id,
            name=name,
            access=body.access,
            code=code,
            start_at=start,
            duration_s=None if body.duration_minutes is None else body.duration_minutes * 60,
            max_participants=body.max_participants,
            divert_to=body.divert_to,
            leader=body.leader,
            manual_answer=body.manual_answer,
            callers=body.callers,
            state=str(plane.initial_state(start)),
            now=plane.clock(),
        )
    except Conflict:
        raise ApiError(409, "conflict", f"name: conference {name!r} already exists") from None
    if body.locked:
        conference = await plane.store.update_conference(conference.id, locked=True)
    conference = await plane.save(conference)
    return conference_view(plane, conference)


@router.get("")
async def list_conferences(
    response: Response, tenant: TenantDep, plane: PlaneDep, paging: PageDep
) -> list[dict[str, Any]]:
    items, total = await plane.store.list_conferences(tenant.id, paging.offset, paging.limit)
    return [conference_view(plane, c) for c in counted(response, items, total)]


@router.get("/{name}")
async def get_conference(name: str, tenant: TenantDep, plane: PlaneDep) -> dict[str, Any]:
    return conference_view(plane, await find(plane, tenant, name))


@router.patch("/{name}")
async def modify_conference(
    name: str, body: ConferenceUpdate, tenant: TenantDep, plane: PlaneDep
) -> dict[str, Any]:
    conference = await find(plane, tenant, name)
    if conference.state == ConferenceState.COMPLETED:
        raise ApiError(409, "conflict", f"conference {name!r} is over")
    given = body.model_dump(exclude_unset=True)
    changes: dict[str, Any] = {}
    for key in (
        "access", "code", "max_participants", "divert_to", "leader", "locked", "manual_answer"
    ):
        if key in given:
            changes[key] = given[key]
    if "start_time" in given:
        if conference.state != ConferenceState.RESERVED:
            raise invalid("start_time", "can only change before the conference starts")
        changes["start_at"] = check_start(plane, body.start_time)
        changes["state"] = str(plane.initial_state(changes["start_at"]))
    if body.duration_minutes is not None and body.extend_minutes is not None:
        raise invalid("extend_minutes", "give duration_minutes or extend_minutes, not both")
    if body.duration_minutes is not None:
        changes["duration_s"] = body.duration_minutes * 60
    if body.extend_minutes is not None:
        if conference.duration_s is None:
            raise invalid("extend_minutes", "the conference has no duration to extend")
        changes["duration_s"] = conference.duration_s + body.extend_minutes * 60
    if "duration_s" in changes:
        changes["warned"] = False
    access = changes.get("access", conference.access)
    if access in ("room", "room+caller") and not changes.get("code", conference.code):
        changes["code"] = new_code()
    if access == "caller" and not conference.callers:
        raise invalid("access", "access 'caller' needs at least one caller")
    conference = await plane.save(conference, **changes)
    return conference_view(plane, conference)


@router.delete("/{name}", status_code=204)
async def remove_conference(name: str, tenant: TenantDep, plane: PlaneDep) -> Response:
    conference = await find(plane, tenant, name)
    if conference.state != ConferenceState.COMPLETED:
        await plane.end(conference)
    return Response(status_code=204)


@router.get("/{name}/callers")
async def list_callers(name: str, tenant: TenantDep, plane: PlaneDep) -> list[str]:
    return list((await find(plane, tenant, name)).callers)


@router.post("/{name}/callers", status_code=201)
async def add_caller(
    name: str, body: CallerAdd, tenant: TenantDep, plane: PlaneDep
) -> dict[str, Any]:
    conference = await find(plane, tenant, name)
    await plane.store.add_caller(conference.id, body.number)
    return conference_view(plane, await plane.refresh(conference))


@router.delete("/{name}/callers/{number}", status_code=204)
async def remove_caller(name: str, number: str, tenant: TenantDep, plane: PlaneDep) -> Response:
    conference = await find(plane, tenant, name)
    if number not in conference.callers:
        raise not_found(f"caller {number!r}")
    await plane.store.remove_caller(conference.id, number)
    await plane.refresh(conference)
    return Response(status_code=204)


# --- participants ---------------------------------------------------------------------------


async def open_conference(plane: ControlPlane, tenant: Tenant, name: str) -> Conference:
    conference = await find(plane, tenant, name)
    if conference.state == ConferenceState.COMPLETED:
        raise ApiError(409, "conflict", f"conference {name!r} is over")
    return conference


@router.get("/{name}/participants")
async def list_participants(name: str, tenant: TenantDep, plane: PlaneDep) -> list[dict[str, Any]]:
    conference = await find(plane, tenant, name)
    if conference.state == ConferenceState.COMPLETED:
        return []
    return [participant_view(p) for p in plane.service.participants(name)]


@router.get("/{name}/participants/{participant_id}")
async def get_participant(
    name: str, participant_id: str, tenant: TenantDep, plane: PlaneDep
) -> dict[str, Any]:
    await open_conference(plane, tenant, name)
    participant = plane.service.find_participant(name, participant_id)
    if participant is None:
        raise not_found(f"participant {participant_id!r}")
    return participant_view(participant)


@router.patch("/{name}/participants/{participant_id}")
async def set_participant_options(
    name: str, participant_id: str, body: ParticipantUpdate, tenant: TenantDep, plane: PlaneDep
) -> dict[str, Any]:
    await open_conference(plane, tenant, name)
    participant = plane.service.find_participant(name, participant_id)
    if participant is None:
        raise not_found(f"participant {participant_id!r}")
    given = body.model_dump(exclude_unset=True, exclude_none=True)
    if "muted" in given:
        plane.service.set_muted(participant, given.pop("muted"), by="api")
    if "on_hold" in given:
        plane.service.set_option(participant, "held", given.pop("on_hold"))
    for option, value in given.items():
        plane.service.set_option(participant, option, value)
    return participant_view(participant)


@router.delete("/{name}/participants/{participant_id}", status_code=204)
async def eject_participant(
    name: str, participant_id: str, tenant: TenantDep, plane: PlaneDep
) -> Response:
    await open_conference(plane, tenant, name)
    participant = plane.service.find_participant(name, participant_id)
    if participant is None:
        raise not_found(f"participant {participant_id!r}")
    plane.service.eject(participant, plane.service.monotonic())
    return Response(status_code=204)
