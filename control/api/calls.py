"""/v1/conferences/{name}/calls: the conference calls people (one number or a list, dialled
one after another), and the outcome of each call by its reference."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import AnyHttpUrl, Field, field_validator

from control.api.auth import PlaneDep, TenantDep
from control.api.schemas import Strict
from control.api.views import call_out_view
from control.dialout import CALLER_ID
from control.usecases import calls

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


@router.post("/conferences/{name}/calls", status_code=202)
async def create_calls(
    name: str, body: CallRequest, tenant: TenantDep, plane: PlaneDep
) -> dict[str, Any]:
    private = body.caller_id == "private"
    placed = await calls.place(
        plane,
        tenant,
        name,
        body.destinations,
        caller_id=None if private else body.caller_id,
        private=private,
        confirm=body.confirm,
        tag=body.tag,
        notify_url=str(body.notify_url) if body.notify_url else None,
    )
    return {"txn_refs": [c.ref for c in placed], "room": name, "status": "queued"}


@router.get("/conferences/{name}/calls")
async def list_calls_out(name: str, tenant: TenantDep, plane: PlaneDep) -> list[dict[str, Any]]:
    return [call_out_view(c) for c in await calls.into(plane, tenant, name)]


@router.get("/dialouts/{ref}")
async def get_call_out(ref: str, tenant: TenantDep, plane: PlaneDep) -> dict[str, Any]:
    return call_out_view(calls.find(plane, tenant, ref))
