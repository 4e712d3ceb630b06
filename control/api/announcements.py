"""/v1/announcements: upload (PUT the audio file as the body), list and delete a tenant's
announcements; POST /v1/conferences/{name}/announcements plays one, or a packaged prompt, to
the room or to one participant. A body over `announcements.max_upload_mb` is refused (413)
by the app's HttpGuard before it is read whole."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request, Response

from control.api.auth import PlaneDep, TenantDep
from control.api.schemas import AnnouncementPlay
from control.usecases import announcements, conferences
from control.usecases.announcements import Announcement

router = APIRouter(tags=["announcements"])


def view(item: Announcement) -> dict[str, Any]:
    return {"name": item.name, "seconds": item.seconds}


@router.put("/v1/announcements/{name}", status_code=201)
async def upload(name: str, request: Request, tenant: TenantDep, plane: PlaneDep) -> dict[str, Any]:
    announcements.check_name(name)
    data = await request.body()
    max_seconds = plane.config.announcements.max_seconds
    samples = await asyncio.to_thread(announcements.decode, data, max_seconds)
    return view(announcements.store(plane, tenant, name, samples))


@router.get("/v1/announcements")
async def listing(tenant: TenantDep, plane: PlaneDep) -> list[dict[str, Any]]:
    return [view(item) for item in announcements.listing(plane, tenant)]


@router.delete("/v1/announcements/{name}", status_code=204)
async def delete(name: str, tenant: TenantDep, plane: PlaneDep) -> Response:
    announcements.delete(plane, tenant, name)
    return Response(status_code=204)


@router.post("/v1/conferences/{name}/announcements", status_code=204)
async def play(name: str, body: AnnouncementPlay, tenant: TenantDep, plane: PlaneDep) -> Response:
    conference = await conferences.find_open(plane, tenant, name)
    announcements.play(plane, tenant, conference, **body.model_dump())
    return Response(status_code=204)
