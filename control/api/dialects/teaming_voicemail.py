"""Teaming's voice mail (seed 002, "Manage your voice messages") under `/teaming` and
`/teaming/v1`: the messages callers left on the user's line (`control/voicemail.py` says when
a caller goes to voice mail and how the message is recorded). Same credentials and numeric
errors as the other Teaming routes; the scope is `callManagement`.

Choices where the document is silent (it names the actions, not their requests):
- `GET /users/{id}/voiceMessages`: newest first, `offset`/`limit` and the `X-Result-Count` /
  `X-Total-Count` headers as the other lists. Each message has the document's fields:
  `duration` (milliseconds, as a string, like the example's "3020"), `callingPartyInfo`
  (`name`: "Unavailable", as in the example, since callers give no name; `phoneNumber`: the
  caller's number as the bridge saw it), `read`, `time` ("YYYY-MM-DD HH:MM:SSZ", UTC) and
  `messageId`.
- `GET .../voiceMessages/{messageId}`: the same plus `mediaContent`: `{mediaType: "WAV",
  content: <the WAV file, base64>}`. Reading it does not mark it read.
- `DELETE .../voiceMessages/{messageId}`: 204, the file is deleted too.
- `PUT .../voiceMessages/{messageId}` with `{"read": true|false}`: mark one; `PUT
  .../voiceMessages` with the same body: mark all of them. 204.
"""

from __future__ import annotations

import base64
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, StrictBool

from control.api.dialects.teaming import (
    CALLS,
    DEFAULT_LIMIT,
    body_schema,
    page_of,
    parse_body,
)
from control.api.dialects.teaming_auth import authorize, teaming_errors
from control.store.records import VoiceMessage
from control.usecases import voicemail

_routes = APIRouter()


class ReadFlag(BaseModel):
    model_config = ConfigDict(extra="forbid")

    read: StrictBool


def message_view(message: VoiceMessage) -> dict[str, Any]:
    return {
        "duration": str(message.duration_ms),
        "callingPartyInfo": {"name": message.caller_name, "phoneNumber": message.caller},
        "read": message.read,
        "time": message.created_at.strftime("%Y-%m-%d %H:%M:%SZ"),
        "messageId": message.id,
    }


@_routes.get("/users/{userId}/voiceMessages")
@teaming_errors
async def list_messages(
    request: Request,
    response: Response,
    userId: str,
    offset: str | None = Query(None, description="first item, from 0"),
    limit: str | None = Query(None, description=f"items per page (default {DEFAULT_LIMIT})"),
) -> list[dict[str, Any]]:
    """The voice messages on the user's line, newest first."""
    plane, tenant = await authorize(request, CALLS, userId)
    page = page_of(plane, offset, limit)
    messages, total = await voicemail.listing(plane, tenant, page.start, page.stop - page.start)
    response.headers["X-Result-Count"] = str(len(messages))
    response.headers["X-Total-Count"] = str(total)
    return [message_view(m) for m in messages]


@_routes.get("/users/{userId}/voiceMessages/{messageId}")
@teaming_errors
async def get_message(request: Request, userId: str, messageId: str) -> dict[str, Any]:
    """One voice message with its audio (WAV, base64)."""
    plane, tenant = await authorize(request, CALLS, userId)
    message, wav = await voicemail.audio(plane, tenant, messageId)
    content = base64.b64encode(wav).decode("ascii")
    return {**message_view(message), "mediaContent": {"mediaType": "WAV", "content": content}}


@_routes.delete("/users/{userId}/voiceMessages/{messageId}", status_code=204)
@teaming_errors
async def delete_message(request: Request, userId: str, messageId: str) -> Response:
    plane, tenant = await authorize(request, CALLS, userId)
    await voicemail.delete(plane, tenant, messageId)
    return Response(status_code=204)


@_routes.put(
    "/users/{userId}/voiceMessages/{messageId}",
    status_code=204,
    openapi_extra=body_schema(ReadFlag),
)
@teaming_errors
async def mark_one(request: Request, userId: str, messageId: str) -> Response:
    """Mark one message read or unread."""
    plane, tenant = await authorize(request, CALLS, userId)
    body = await parse_body(request, ReadFlag)
    await voicemail.mark(plane, tenant, messageId, body.read)
    return Response(status_code=204)


@_routes.put("/users/{userId}/voiceMessages", status_code=204, openapi_extra=body_schema(ReadFlag))
@teaming_errors
async def mark_all(request: Request, userId: str) -> Response:
    """Mark every message read or unread."""
    plane, tenant = await authorize(request, CALLS, userId)
    body = await parse_body(request, ReadFlag)
    await voicemail.mark(plane, tenant, None, body.read)
    return Response(status_code=204)


router = APIRouter(tags=["teaming"])
router.include_router(_routes, prefix="/teaming")
router.include_router(_routes, prefix="/teaming/v1", include_in_schema=False)
