"""The Orange Teaming dialect (seed 002): telephony profile, call control (ANSWER / HOLD /
UNHOLD, DELETE to release), "Basic Call" and "Voice Messaging" event subscriptions, pagination
headers and the document's OAuth error codes, under `/teaming` (the document's base URL path)
and again under `/teaming/v1` (the document's DELETE example carries a `/v1`; every route
answers on both).

Mapping onto the native plane: a Teaming user (`{id}`) is an application (tenant), named by its
id or its name; its bearer token is the application's API token and only reaches its own user
(another user is a 404, as native rooms of another tenant are). Its calls are every call leg in
its open conferences: calls left ringing in a manual-answer conference (`manual_answer`: the
bridge sends 180 and waits) and the participants. A `callId` is the leg's participant id (the
To-tag of the bridge's answer, known from the first ring), so it stays the same from alerting to
release; `externalTrackingId` is the SIP Call-ID. ANSWER answers a ringing call, HOLD/UNHOLD
set the participant's native `on_hold` (out of the mix, hears hold music), DELETE rejects a
ringing call with 603 Decline or hangs up an answered one with BYE.

Choices where the document is silent:
- Sign-in: bearer tokens from the token endpoint (`teaming_signin.py`, the grants in
  `control.usecases.signin`) with their scopes: profile `configuration`, calls
  `callManagement`, subscriptions `notifications`; an application's API token works too,
  with every user scope. Errors are `{code, message, description}` with numeric codes
  (`teaming_auth.py` lists them); credentials and scopes are checked before anything else,
  so a bad request without a token is still a 400 code 25.
- Request bodies are read as JSON whatever their Content-Type: the document's curl examples
  send them with `-d` (form-urlencoded). Unknown body fields are 400, as in the native API.
- Profile (`GET /users/myTelephonyProfile`, and `GET /users/{userId}/telephonyProfile`, which
  the admin token may ask about any application): `userId` is the application id, `impId`
  `<application name>@<bridge address>`, `countryCode` empty (the bridge has no country),
  `didNumber` the SIP URI to dial in: the application's oldest open conference, or the IVR
  user (`rooms.ivr_users[0]`, which asks for a room code; the bare bridge URI when there is
  none); `shortNumber` that URI's user part. `firstName`/`lastName`: the application name
  split at its first `-`, `_`, `.` or space (no separator: all of it is the first name).
- Perform a call (the document shows only `GET /users/{id}/calls` under that heading):
  `POST /users/{id}/calls` with `{"calledNumber": ..., "conference": ...}` (a body with
  `calledNumber` is a call, any other a subscription, so one path serves both as in the
  document's examples). The user's line calls the number (E.164 through `dialout.trunk`, or a
  SIP URI) out of `conference` (default: the user's oldest open conference) and the callee
  joins it on answer; scope `callManagement`; 201 `{callId, externalTrackingId}`, both the
  dial-out reference at that point (no SIP dialog exists yet). The calls list shows it from
  then on under that `callId`: `ALERTING` while the callee's phone rings (and, when asked to
  confirm, until the callee presses #), then `ACTIVE` with the SIP Call-ID as its
  `externalTrackingId`. DELETE releases it at any time (before the answer: the bridge
  cancels it, and it ends unanswered); ANSWER / HOLD take it once answered (before: 409 code
  64). Refusals are the native ones with numeric codes (bad number 400 code 22, no conference
  400, unknown conference 404 code 60, too many calls 429 code 53).
- Calls list items: `callId`, `externalTrackingId` (the document's two fields) plus `state`
  (`ALERTING`, `ACTIVE`, `HELD`), `caller` (for a performed call: the number called),
  `conference` and `startTime`, oldest first.
  `PUT .../calls/{callId}?action=` takes ANSWER, HOLD or UNHOLD, case-insensitive; HOLD on a
  held call and UNHOLD on a call not held are no-ops (204).
- Subscribe (`POST /users/{id}/calls`, 201): `callBackUrl` (http or https) and `eventType`
  ("Basic Call" or "Voice Messaging") are required; `expires` in seconds 60..2592000 (the
  native bounds), default 3600; `applicationId` (1..128 chars) defaults to the application's
  name; `targetId`, when given, must name the path's user; `targetType`, when given, must be
  "User". "Basic Call" is a native subscription to `call.alerting`, `participant.joined`
  (answered) and `call.ended` (released: every call gets it once, also one declined or
  abandoned while ringing, with the same `participant_id` as its alerting). Callbacks carry
  the native webhook JSON (`{id, type, tenant, created_at, data}`): the document describes
  no body.
  "Voice Messaging" (the document: "notified ... on the voice messaging (new message, message
  deleted)"; it names no event type for it, this is its own phrase) is a native subscription
  to `voicemail.new` and `voicemail.deleted`, whose `data` are `{message_id, caller,
  duration_ms, created_at}`; `message_id` is the `messageId` of the voice-message routes.
- Renew (`PUT /users/{id}/calls`, 204) names no subscription in the document's example: it
  renews every Teaming subscription of the user, or only `subscriptionId` when the body
  gives one; `expires` defaults to 3600. A user without one is a 404. `PUT`, `GET` and `DELETE
  /subscriptions/{subscriptionId}` manage one subscription ("list all subscriptions or one").
- `GET /subscriptions` lists the application's Teaming subscriptions (native ones for
  other event types are not Teaming's), expired ones included; `expires` is the seconds left
  (0 once expired). `/susbcriptions`, the document's spelling in its example, is an alias
  left out of the OpenAPI schema. The `applicationId` given at subscription is stored with it
  (the subscription's label), so it survives a restart.
- Pagination on both lists: `offset` (default 0) and `limit` (default 50, at most
  `control.max_page`); `X-Result-Count` and `X-Total-Count` headers; an offset past the end is
  an empty page.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Query, Request, Response
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, ValidationError

from control.api.auth import plane_of
from control.api.dialects.teaming_auth import (
    authorize,
    bearer_token,
    is_user,
    query_invalid,
    teaming_errors,
)
from control.api.errors import ApiError, invalid, not_found
from control.api.views import dial_in
from control.callout import CallOut
from control.events import iso
from control.plane import ControlPlane
from control.store.errors import NotFound
from control.store.records import Subscription, Tenant
from control.usecases import calls, legs
from control.usecases.auth import is_admin
from control.usecases.errors import Conflict
from control.usecases.legs import Leg

BASIC_CALL = "Basic Call"
BASIC_CALL_EVENTS = ("call.alerting", "participant.joined", "call.ended")
VOICE_MESSAGING = "Voice Messaging"
VOICE_MESSAGING_EVENTS = ("voicemail.new", "voicemail.deleted")
PACKAGES = {BASIC_CALL: BASIC_CALL_EVENTS, VOICE_MESSAGING: VOICE_MESSAGING_EVENTS}
MIN_EXPIRES_S, MAX_EXPIRES_S, DEFAULT_EXPIRES_S = 60, 30 * 86_400, 3600
ACTIONS = ("ANSWER", "HOLD", "UNHOLD")
DEFAULT_LIMIT = 50
CALLS, NOTIFICATIONS, CONFIGURATION = "callManagement", "notifications", "configuration"
M = TypeVar("M", bound=BaseModel)

_routes = APIRouter()  # mounted twice at the end: under /teaming and /teaming/v1


# --- parameters and bodies ------------------------------------------------------------------


def int_param(name: str, raw: str | None, default: int, low: int, high: int) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise query_invalid(name, "must be an integer") from None
    if not low <= value <= high:
        raise query_invalid(name, f"must be in {low}..{high}")
    return value


def page_of(plane: ControlPlane, offset: str | None, limit: str | None) -> slice:
    start = int_param("offset", offset, 0, 0, 2**31)
    size = int_param("limit", limit, DEFAULT_LIMIT, 1, plane.config.control.max_page)
    return slice(start, start + size)


def paged(response: Response, items: list[Any], page: slice) -> list[Any]:
    """One page of `items`, with the document's count headers."""
    chosen = items[page]
    response.headers["X-Result-Count"] = str(len(chosen))
    response.headers["X-Total-Count"] = str(len(items))
    return chosen


def validation_message(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error.get("loc", ())) or "body"
        if error.get("type") == "extra_forbidden":
            problems.append(f"{field}: unknown field")
        else:
            problems.append(f"{field}: {error.get('msg', 'invalid')}")
    return "; ".join(problems)


async def json_object(request: Request) -> dict[str, Any]:
    """The JSON object of the body whatever its Content-Type (curl -d sends form-urlencoded)."""
    raw = await request.body()
    try:
        data = json.loads(raw) if raw.strip() else {}
    except ValueError:
        raise invalid("body", "not valid JSON") from None
    if not isinstance(data, dict):
        raise invalid("body", "must be a JSON object")
    return data


async def parse_body(request: Request, model: type[M], data: dict[str, Any] | None = None) -> M:
    """The body (or `data`, already read from it) as `model`."""
    if data is None:
        data = await json_object(request)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(
            400, "invalid_field", validation_message(exc), "The request body is invalid."
        ) from None


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI for a body read by `parse_body` (FastAPI does not see it)."""
    schema = model.model_json_schema(by_alias=True)
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


Expires = Annotated[int, Field(ge=MIN_EXPIRES_S, le=MAX_EXPIRES_S)]


class Subscribe(BaseModel):
    model_config = ConfigDict(extra="forbid")

    applicationId: str | None = Field(default=None, min_length=1, max_length=128)
    callBackUrl: AnyHttpUrl
    eventType: Literal["Basic Call", "Voice Messaging"]
    expires: Expires = DEFAULT_EXPIRES_S
    targetId: str | None = None
    targetType: Literal["User"] | None = None


class Renew(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expires: Expires = DEFAULT_EXPIRES_S
    subscriptionId: str | None = None


class RenewOne(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expires: Expires = DEFAULT_EXPIRES_S


# --- profile --------------------------------------------------------------------------------


def profile_uri(plane: ControlPlane, tenant: Tenant) -> str:
    """The application's dial-in: its oldest open conference, else the code IVR."""
    rooms = sorted(
        (c for c in plane.conferences.values() if c.tenant_id == tenant.id),
        key=lambda c: (c.created_at, c.name),
    )
    if rooms:
        return dial_in(plane, rooms[0].name)
    if plane.config.rooms.ivr_users:
        return dial_in(plane, plane.config.rooms.ivr_users[0])
    return plane.sip_uri()


def name_parts(name: str) -> tuple[str, str]:
    """First and last name from an application name: split at its first separator."""
    match = re.search(r"[-_. ]", name)
    if match is None:
        return name, ""
    return name[: match.start()], name[match.end() :]


def profile_view(plane: ControlPlane, tenant: Tenant) -> dict[str, str]:
    uri = profile_uri(plane, tenant)
    user = uri[4:].split("@", 1)[0] if "@" in uri else ""
    first, last = name_parts(tenant.name)
    return {
        "userId": tenant.id,
        "impId": f"{tenant.name}@{plane.config.advertise_address}",
        "countryCode": "",
        "didNumber": uri,
        "shortNumber": user,
        "firstName": first,
        "lastName": last,
    }


@_routes.get("/users/myTelephonyProfile")
@teaming_errors
async def my_telephony_profile(request: Request) -> dict[str, str]:
    """The token's own telephony information."""
    plane, tenant = await authorize(request, CONFIGURATION)
    return profile_view(plane, tenant)


@_routes.get("/users/{userId}/telephonyProfile")
@teaming_errors
async def telephony_profile(request: Request, userId: str) -> dict[str, str]:
    """Any application's profile for the admin token ("as an administrator"), else one's own."""
    plane = plane_of(request)
    token = bearer_token(request)
    if is_admin(plane, token):
        tenant = await plane.store.tenants.get_tenant(userId)
        if tenant is None:
            raise not_found(f"user {userId!r}")
        return profile_view(plane, tenant)
    plane, tenant = await authorize(request, CONFIGURATION, userId)
    return profile_view(plane, tenant)


# --- calls ----------------------------------------------------------------------------------


def performed(plane: ControlPlane, tenant: Tenant) -> dict[str, str]:
    """Participant id -> reference of the calls this user performed that were answered."""
    return {
        c.participant: c.ref
        for c in plane.dialouts.records.values()
        if c.tenant_id == tenant.id and c.participant
    }


def ringing_out(plane: ControlPlane, tenant: Tenant, call_id: str) -> CallOut | None:
    """The performed call `call_id` while the callee has not answered (or confirmed) yet."""
    call = plane.dialouts.records.get(call_id)
    if call is None or call.tenant_id != tenant.id or call.participant or call.settled:
        return None
    return call


def performed_ringing(plane: ControlPlane, tenant: Tenant) -> list[CallOut]:
    """Every call of this user's still ringing at its callee."""
    return [c for c in plane.dialouts.records.values() if ringing_out(plane, tenant, c.ref)]


def find_leg(plane: ControlPlane, tenant: Tenant, call_id: str) -> Leg:
    """A leg by its callId: a participant or ringing call's id, or a performed call's ref."""
    ringing = ringing_out(plane, tenant, call_id)
    if ringing is not None:
        raise Conflict(f"callId: call {call_id!r} is still ringing at {ringing.dest}")
    call = plane.dialouts.records.get(call_id)
    if call is not None and call.tenant_id == tenant.id and call.participant:
        call_id = call.participant
    return legs.find(plane, tenant, call_id)


def call_view(leg: Leg, refs: dict[str, str] | None = None) -> dict[str, Any]:
    state = "ALERTING" if leg.ringing else "HELD" if leg.held else "ACTIVE"
    return {
        "callId": (refs or {}).get(leg.id, leg.id),
        "externalTrackingId": leg.call_id,
        "state": state,
        "caller": leg.caller,
        "conference": leg.room,
        "startTime": iso(leg.started_at) if leg.started_at else None,
    }


def performed_view(call: CallOut) -> dict[str, Any]:
    """A performed call while the callee's phone rings: the same fields as an answered one."""
    return {
        "callId": call.ref,
        "externalTrackingId": call.ref,
        "state": "ALERTING",
        "caller": call.dest,
        "conference": call.room,
        "startTime": iso(call.started_at) if call.started_at else None,
    }


def parse_action(action: str | None) -> str:
    verb = (action or "").upper()
    if verb not in ACTIONS:
        raise query_invalid("action", f"must be one of {', '.join(ACTIONS)}, got {action!r}")
    return verb


@_routes.get("/users/{userId}/calls")
@teaming_errors
async def list_calls(
    request: Request,
    response: Response,
    userId: str,
    offset: str | None = Query(None, description="first item, from 0"),
    limit: str | None = Query(None, description=f"items per page (default {DEFAULT_LIMIT})"),
) -> list[dict[str, Any]]:
    """The user's calls: ringing ones (both ways) and answered ones, oldest first."""
    plane, tenant = await authorize(request, CALLS, userId)
    page = page_of(plane, offset, limit)
    refs = performed(plane, tenant)
    views = [(leg.started_at, call_view(leg, refs)) for leg in legs.legs_of(plane, tenant)]
    views += [(c.started_at, performed_view(c)) for c in performed_ringing(plane, tenant)]
    views.sort(key=lambda item: (item[0], item[1]["callId"]))
    return paged(response, [view for _, view in views], page)


@_routes.put("/users/{userId}/calls/{callId}", status_code=204)
@teaming_errors
async def control_call(
    request: Request,
    userId: str,
    callId: str,
    action: str | None = Query(None, description="ANSWER, HOLD or UNHOLD"),
) -> Response:
    """ANSWER a ringing call; HOLD or UNHOLD an answered one."""
    plane, tenant = await authorize(request, CALLS, userId)
    verb = parse_action(action)
    leg = find_leg(plane, tenant, callId)
    if verb == "ANSWER":
        legs.answer(plane, leg)
    else:
        legs.hold(plane, leg, verb == "HOLD")
    return Response(status_code=204)


@_routes.delete("/users/{userId}/calls/{callId}", status_code=204)
@teaming_errors
async def release_call(request: Request, userId: str, callId: str) -> Response:
    """Release: decline a ringing call (603), cancel a performed one still ringing, hang up
    an answered one (BYE)."""
    plane, tenant = await authorize(request, CALLS, userId)
    if ringing_out(plane, tenant, callId) is not None:
        calls.cancel(plane, tenant, callId)
    else:
        legs.release(plane, find_leg(plane, tenant, callId))
    return Response(status_code=204)


# --- subscriptions --------------------------------------------------------------------------


def package_of(subscription: Subscription) -> str | None:
    """The Teaming event type a native subscription is, or None (not one of Teaming's)."""
    kinds = set(subscription.event_types)
    return next((name for name, events in PACKAGES.items() if kinds == set(events)), None)


async def teaming_subscriptions(plane: ControlPlane, tenant: Tenant) -> list[Subscription]:
    subscriptions = await plane.store.subscriptions.list_subscriptions(tenant.id)
    return [s for s in subscriptions if package_of(s) is not None]


async def find_subscription(
    plane: ControlPlane, tenant: Tenant, subscription_id: str
) -> Subscription:
    subscription = await plane.store.subscriptions.get_subscription(tenant.id, subscription_id)
    if subscription is None or package_of(subscription) is None:
        raise not_found(f"subscription {subscription_id!r}")
    return subscription


def subscription_view(
    request: Request, plane: ControlPlane, tenant: Tenant, subscription: Subscription
) -> dict[str, Any]:
    left = (subscription.expires_at - plane.clock()).total_seconds()
    return {
        "subscriptionId": subscription.id,
        "expires": max(0, int(left)),
        "applicationId": subscription.label or tenant.name,
        "eventType": package_of(subscription),
        "callBackUrl": subscription.callback_url,
    }


async def renew(
    plane: ControlPlane, tenant: Tenant, subscriptions: list[Subscription], expires_s: int
) -> None:
    expires_at = plane.clock() + timedelta(seconds=expires_s)
    for subscription in subscriptions:
        try:
            await plane.store.subscriptions.renew_subscription(
                tenant.id, subscription.id, expires_at
            )
        except NotFound:
            raise not_found(f"subscription {subscription.id!r}") from None


@_routes.post("/users/{userId}/calls", status_code=201, openapi_extra=body_schema(Subscribe))
@teaming_errors
async def subscribe(request: Request, userId: str) -> dict[str, Any]:
    """Subscribe to the user's call events (alerting, answered, released); or, with a
    `calledNumber`, perform a call."""
    data = await json_object(request)
    if "calledNumber" in data:
        return await perform_call(request, userId, data)
    plane, tenant = await authorize(request, NOTIFICATIONS, userId)
    body = await parse_body(request, Subscribe, data)
    if body.targetId is not None and not is_user(tenant, body.targetId):
        raise invalid("targetId", f"must be the user of the path ({userId!r})")
    now = plane.clock()
    subscription = await plane.store.subscriptions.create_subscription(
        tenant.id,
        str(body.callBackUrl),
        PACKAGES[body.eventType],
        now + timedelta(seconds=body.expires),
        now,
        label=body.applicationId or tenant.name,
    )
    return {"subscriptionId": subscription.id, "expires": body.expires}


class MakeCall(BaseModel):
    model_config = ConfigDict(extra="forbid")

    calledNumber: str = Field(min_length=1, max_length=255)
    conference: str | None = Field(default=None, min_length=1, max_length=64)


async def perform_call(request: Request, user_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """The user's line calls `calledNumber`: a call out of `conference` (default: the user's
    oldest open conference) that joins it when answered."""
    plane, tenant = await authorize(request, CALLS, user_id)
    body = await parse_body(request, MakeCall, data)
    room = body.conference or line_of(plane, tenant)
    (call,) = await calls.place(plane, tenant, room, [body.calledNumber], tag="teaming")
    return {"callId": call.ref, "externalTrackingId": call.ref}


def line_of(plane: ControlPlane, tenant: Tenant) -> str:
    rooms = sorted(
        (c for c in plane.conferences.values() if c.tenant_id == tenant.id),
        key=lambda c: (c.created_at, c.name),
    )
    if not rooms:
        raise invalid("conference", "the user has no open conference to call from")
    return rooms[0].name


@_routes.put("/users/{userId}/calls", status_code=204, openapi_extra=body_schema(Renew))
@teaming_errors
async def renew_user_subscriptions(request: Request, userId: str) -> Response:
    """Renew the user's subscriptions (or the one named by `subscriptionId`)."""
    plane, tenant = await authorize(request, NOTIFICATIONS, userId)
    body = await parse_body(request, Renew)
    subscriptions = await teaming_subscriptions(plane, tenant)
    if body.subscriptionId is not None:
        subscriptions = [s for s in subscriptions if s.id == body.subscriptionId]
        if not subscriptions:
            raise not_found(f"subscription {body.subscriptionId!r}")
    if not subscriptions:
        raise not_found(f"subscription of user {userId!r}")
    await renew(plane, tenant, subscriptions, body.expires)
    return Response(status_code=204)


@_routes.get("/subscriptions")
@_routes.get("/susbcriptions", include_in_schema=False)
@teaming_errors
async def list_subscriptions(
    request: Request,
    response: Response,
    offset: str | None = Query(None, description="first item, from 0"),
    limit: str | None = Query(None, description=f"items per page (default {DEFAULT_LIMIT})"),
) -> list[dict[str, Any]]:
    """The application's "Basic Call" and "Voice Messaging" subscriptions."""
    plane, tenant = await authorize(request, NOTIFICATIONS)
    page = page_of(plane, offset, limit)
    subscriptions = paged(response, await teaming_subscriptions(plane, tenant), page)
    return [subscription_view(request, plane, tenant, s) for s in subscriptions]


@_routes.get("/subscriptions/{subscriptionId}")
@teaming_errors
async def get_subscription(request: Request, subscriptionId: str) -> dict[str, Any]:
    plane, tenant = await authorize(request, NOTIFICATIONS)
    subscription = await find_subscription(plane, tenant, subscriptionId)
    return subscription_view(request, plane, tenant, subscription)


@_routes.put(
    "/subscriptions/{subscriptionId}", status_code=204, openapi_extra=body_schema(RenewOne)
)
@teaming_errors
async def renew_subscription(request: Request, subscriptionId: str) -> Response:
    plane, tenant = await authorize(request, NOTIFICATIONS)
    body = await parse_body(request, RenewOne)
    await renew(
        plane, tenant, [await find_subscription(plane, tenant, subscriptionId)], body.expires
    )
    return Response(status_code=204)


@_routes.delete("/subscriptions/{subscriptionId}", status_code=204)
@teaming_errors
async def delete_subscription(request: Request, subscriptionId: str) -> Response:
    plane, tenant = await authorize(request, NOTIFICATIONS)
    await find_subscription(plane, tenant, subscriptionId)
    try:
        await plane.store.subscriptions.delete_subscription(tenant.id, subscriptionId)
    except NotFound:
        raise not_found(f"subscription {subscriptionId!r}") from None
    return Response(status_code=204)


router = APIRouter(tags=["teaming"])
router.include_router(_routes, prefix="/teaming")
router.include_router(_routes, prefix="/teaming/v1", include_in_schema=False)
