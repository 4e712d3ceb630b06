"""/v1/conferences/{name}/recording(s): start and stop a conference's recording, list its
files and download one. The bridge writes the file; refusals are domain errors."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import FileResponse

from control.api.auth import PlaneDep, TenantDep
from control.api.schemas import RecordingStart
from control.usecases import conferences, recordings
from control.usecases.recordings import RecordingFile

router = APIRouter(prefix="/v1/conferences", tags=["recordings"])
MEDIA_TYPES = {"wav": "audio/wav", "ogg": "audio/ogg"}


def view(recording: RecordingFile) -> dict[str, Any]:
    return {
        "file": recording.file,
        "size_bytes": recording.size_bytes,
        "recording": recording.recording,
    }


@router.post("/{name}/recording", status_code=201)
async def start_recording(
    name: str, tenant: TenantDep, plane: PlaneDep, body: RecordingStart | None = None
) -> dict[str, Any]:
    conference = await conferences.find_open(plane, tenant, name)
    return view(recordings.start(plane, conference, body.format if body else None))


@router.delete("/{name}/recording", status_code=204)
async def stop_recording(name: str, tenant: TenantDep, plane: PlaneDep) -> Response:
    recordings.stop(plane, await conferences.find_open(plane, tenant, name))
    return Response(status_code=204)


@router.get("/{name}/recordings")
async def list_recordings(name: str, tenant: TenantDep, plane: PlaneDep) -> list[dict[str, Any]]:
    conference = await conferences.find(plane, tenant, name)
    return [view(r) for r in recordings.listing(plane, conference)]


@router.get("/{name}/recordings/{file}")
async def download_recording(name: str, file: str, tenant: TenantDep, plane: PlaneDep) -> Any:
    path = recordings.file(plane, await conferences.find(plane, tenant, name), file)
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix[1:]], filename=path.name)
