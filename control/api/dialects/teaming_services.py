"""Teaming's call forward (seed 002, "Configure your Call Forward"): `GET` and `PUT
/users/{user}/services/{service}` for `callForwardingAlways`, `callForwardingBusy`,
`callForwardingNoAnswer`, `callForwardingNotReachable`, `doNotDisturb` and `voiceMessaging`,
under `/teaming` and `/teaming/v1` like the other Teaming routes (same credentials, scope
`configuration`, numeric error codes).

Choices where the document is silent (its PUT example is a copy of the GET): `PUT` takes the
JSON object that `GET` returns, `{active, forwardToPhoneNumber, ringSplash}`, read as JSON
whatever its Content-Type, and replaces the service's settings (a field left out takes its
default: false, none, false), answering 204. `forwardToPhoneNumber` is a number (digits,
optional leading +, routed through `dialout.trunk`; the document's `0123456789` is one) or a
SIP URI, required to activate a forwarding service; `doNotDisturb` and `voiceMessaging` have
no number (GET shows `active` and `ringSplash` only). `callForwardingNoAnswer` also takes and
shows `numberOfRings` (1..20, default 3, a ring being 6 s; BroadWorks' name for it): a call to
a manual-answer conference still ringing then is forwarded.

`voiceMessaging` is ours: the document lists no voice-mail switch, BroadWorks (where Teaming's
call ids come from) has one by that name. Active (default off, so a locked conference still
answers 403, as Orange's `none` mode needs), it sends to voice mail the calls to a locked or
full conference (BroadWorks' busy redirect) and those left ringing on a manual-answer one
after callForwardingNoAnswer's `numberOfRings` (set even while that forwarding is off); a
forwarding rule that applies goes first. What each service does to incoming calls is in
`control/forwarding.py`. An unknown service is 404 code 60; a bad field 400 code 22.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from control.api.dialects.teaming import CONFIGURATION, body_schema, parse_body
from control.api.dialects.teaming_auth import authorize, teaming_errors
from control.forwarding import DEFAULT_RINGS, FORWARDS_NOWHERE, NO_ANSWER
from control.store.records import ForwardingRule
from control.usecases import forwarding

_routes = APIRouter()


class ServiceSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    active: StrictBool = False
    forwardToPhoneNumber: str | None = Field(default=None, min_length=1, max_length=255)
    ringSplash: StrictBool = False
    numberOfRings: int | None = Field(default=None, ge=1, le=20, strict=True)


def settings_view(rule: ForwardingRule) -> dict[str, Any]:
    view: dict[str, Any] = {"active": rule.active}
    if rule.service not in FORWARDS_NOWHERE:
        view["forwardToPhoneNumber"] = rule.forward_to
    view["ringSplash"] = rule.ring_splash
    if rule.service == NO_ANSWER:
        view["numberOfRings"] = rule.rings or DEFAULT_RINGS
    return view


@_routes.get("/users/{userId}/services/{service}")
@teaming_errors
async def get_service(request: Request, userId: str, service: str) -> dict[str, Any]:
    """One call-forward service's settings."""
    plane, tenant = await authorize(request, CONFIGURATION, userId)
    return settings_view(forwarding.get(plane, tenant, service))


@_routes.put(
    "/users/{userId}/services/{service}",
    status_code=204,
    openapi_extra=body_schema(ServiceSettings),
)
@teaming_errors
async def put_service(request: Request, userId: str, service: str) -> Response:
    """Replace one call-forward service's settings."""
    plane, tenant = await authorize(request, CONFIGURATION, userId)
    forwarding.check_service(service)
    body = await parse_body(request, ServiceSettings)
    await forwarding.put(
        plane,
        tenant,
        service,
        active=body.active,
        forward_to=body.forwardToPhoneNumber,
        ring_splash=body.ringSplash,
        rings=body.numberOfRings,
    )
    return Response(status_code=204)


router = APIRouter(tags=["teaming"])
router.include_router(_routes, prefix="/teaming")
router.include_router(_routes, prefix="/teaming/v1", include_in_schema=False)
