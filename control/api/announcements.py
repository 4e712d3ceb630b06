"""/v1/announcements: upload (PUT the audio file as the body), list and delete a tenant's
announcements; POST /v1/conferences/{name}/announcements plays one, or a packaged prompt, to
the room or to one participant. A body over `announcements.max_upload_mb` is refused (413)
before it is read whole."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request, Response

from control.api.auth import PlaneDep, TenantDep
from control.api.errors import ApiError
from control.api.schemas import AnnouncementPlay
from control.usecases import announcements, conferences
from control.usecases.announcements import Announcement

router = APIRouter(tags=["announcements"])


def view(item: Announcement) -> dict[str, Any]:
    return {"name": item.name, "seconds": item.seconds}


async def bounded_body(request: Request, limit: int) -> bytes:
    too_large = ApiError(413, "too_large", f"announcement over {limit} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise too_large
    return bytes(data)


@router.put("/v1/announcements/{name}", status_code=201)
async def upload(name: str, request: Request, tenant: TenantDep, plane: PlaneDep) -> dict[str, Any]:
    announcements.check_name(name)
    settings = plane.config.announcements
    data = await bounded_body(request, settings.max_upload_mb * 1024 * 1024)
    samples = await asyncio.to_thread(announcements.decode, data, settings.max_seconds)
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
