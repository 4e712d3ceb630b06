"""/v1/conferences/{name}/calls: the conference calls people (one number or a list, dialled
one after another), and the outcome of each call by its reference."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import AnyHttpUrl, Field, field_validator

from bridge.conference.dialout import DialOut
from control.api.auth import PlaneDep, TenantDep
from control.api.conferences import find
from control.api.errors import ApiError, invalid, not_found
from control.api.schemas import Strict
from control.dialout import CALLER_ID, LimitError, RouteError
from control.events import iso
from control.schedule import ConferenceState

router = APIRouter(prefix="/v1", tags=["calls"])

Destination = Annotated[str, Field(min_length=1, max_length=256)]


class CallRequest(Strict):
    dest: Destination | list[Destination]
    caller_id: str | None = Field(
        default=None, description='a number, "private" (anonymous), or absent for the default'
    )
    confirm: bool = Field(default=False, description="the callee must press # to join")
    tag: str = Field(default="", max_length=256)
    notify_url: AnyHttpUrl | None = None

    @field_validator("caller_id")
    @classmethod
    def caller_id_form(cls, value: str | None) -> str | None:
        if value is not None and value != "private" and not CALLER_ID.match(value):
            raise ValueError('must be a number (+ and digits) or "private"')
        return value

    @property
    def destinations(self) -> list[str]:
        return [self.dest] if isinstance(self.dest, str) else list(self.dest)


def call_view(call: DialOut) -> dict[str, Any]:
    return {
        "txn_ref": call.ref,
        "conference": call.room,
        "dest": call.dest,
        "caller_id": call.caller_id,
        "status": str(call.status),
        "sip_status": call.sip_status,
        "reason": call.reason,
        "tag": call.tag,
        "confirm": call.confirm,
        "started_at": iso(call.started_at) if call.started_at else None,
        "answered_at": iso(call.answered_at),
        "ended_at": iso(call.ended_at),
        "duration_s": round(call.duration_s, 3),
    }


@router.post("/conferences/{name}/calls", status_code=202)
async def create_calls(
    name: str, body: CallRequest, tenant: TenantDep, plane: PlaneDep
) -> dict[str, Any]:
    conference = await find(plane, tenant, name)
    if conference.state in (ConferenceState.RESERVED, ConferenceState.COMPLETED):
        state = conference.state.lower()
        raise ApiError(409, "conflict", f"conference {name!r} is {state}: no calls out")
    dests = body.destinations
    if not dests:
        raise invalid("dest", "give at least one destination")
    default = plane.config.dialout.caller_id or conference.name
    caller = body.caller_id if body.caller_id not in (None, "private") else default
    try:
        calls = await plane.dialouts.start_request(
            tenant.id,
            name,
            dests,
            caller_id=caller or default,
            private=body.caller_id == "private",
            confirm=body.confirm,
            tag=body.tag,
            notify_url=str(body.notify_url) if body.notify_url else None,
        )
    except RouteError as exc:
        field, _, problem = str(exc).partition(": ")
        raise invalid(field, problem) from None
    except LimitError as exc:
        raise ApiError(429, "concurrent_call_limit", str(exc)) from None
    return {"txn_refs": [c.ref for c in calls], "room": name, "status": "queued"}


@router.get("/conferences/{name}/calls")
async def list_calls_out(name: str, tenant: TenantDep, plane: PlaneDep) -> list[dict[str, Any]]:
    await find(plane, tenant, name)
    return [
        call_view(c)
        for c in plane.dialouts.records.values()
        if c.room == name and c.owner == tenant.id
    ]


@router.get("/dialouts/{ref}")
async def get_call_out(ref: str, tenant: TenantDep, plane: PlaneDep) -> dict[str, Any]:
    call = plane.dialouts.records.get(ref)
    if call is None or call.owner != tenant.id:
        raise not_found(f"call {ref!r}")
    return call_view(call)
