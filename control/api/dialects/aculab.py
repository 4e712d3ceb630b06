"""The Aculab dialect: Aculab Cloud's conference management web services (seed 004) on our
bridge, with the document's service actions, parameter names, limits, states and JSON replies.

Paths: the document's own service actions as path segments, under `/aculab` (a client replaces
`https://ws.aculabcloud.net` with `http://<control address>/aculab`), each answering GET and
POST as the document says: `/aculab/conference_reservation_create`, `..._modify`, `..._remove`,
`/aculab/conference_list`, `/aculab/conference_participant_list`,
`/aculab/conference_participant_set_options`, `/aculab/conference_participant_eject`.

Choices made where the document is silent:
- Auth: HTTP Basic, username = application (tenant) name, password = one of its API tokens
  (the document's "API Access Key"). A `cloudID/` prefix on the username ("1-2-0/acme") is
  accepted and ignored, as application names cannot contain "/". Anything else is a 401 with
  `WWW-Authenticate: Basic`.
- Parameters: the query string, and for POST also an `application/x-www-form-urlencoded`
  body; any other non-empty body is refused (0002). A parameter given twice (also once in the
  query and once in the body) is error 0003. An empty value counts as absent. Unknown
  parameters are ignored, as an HTML form's extra fields would be.
- Errors: the document gives no error shape, so this follows Aculab's published "Web Service
  Errors" page: `{"error": {"code", "text", "datetime", "link"}, "request": {"url",
  "datetime"}}`, times as YYYY-MM-DD_hh:mm:ss UTC. Codes: 0001 missing parameter, 0002 malformed
  or out-of-range parameter, 0003 repeated parameter (all HTTP 400); "HTTP 401" bad or missing
  credentials; "HTTP 404" unknown conference, reservation token or participant (another
  application's conference is unknown too); "HTTP 409" the conference's state refuses the
  request (wrong state, too close to its start or end, or the name is already in use). Only the
  first problem found is reported, checking parameters in the document's order.
- Reservation token: the conference's id (opaque, unguessable). Every conference with a start
  time is a reserved conference, whichever API made it; one without is unreserved (no token,
  and only HOLDING or ACTIVE are reported for it).
- Times: the plane's clock (injectable); start_time is rounded down to the minute before the
  5 minute / 24 hour window is checked, both edges inclusive. "Not due to finish in the next
  five minutes" and "not due to start within the next 5 minutes" are inclusive at exactly 5.
- Modify: extends a reserved conference with a duration (an open-ended one has nothing to
  extend: 409); the warning before the end is re-armed. Remove ends the conference with the
  reason "reservation removed", and such conferences leave conference_list at once.
- conference_list: the application's conferences that are not COMPLETED, plus reserved ones
  that COMPLETED in the last 24 hours (so a client can see how they ended); in creation order.
  `duration` and `divert` appear only when the reservation has them. Rooms created by dialling
  in (no application owns them) are not listed. An unreserved conference's max_participants is
  the bridge's `rooms.max_participants` (40 by default) unless the native API set one.
- States as the document defines them for reserved conferences: ACTIVE is "two or more
  participants, including the leader"; with fewer (or without the leader) the conference is
  HOLDING, also when people leave an ACTIVE one; COMPLETED at its end. The leader is named
  when reserving by the optional `leader` parameter (the document is silent): the caller's
  number or SIP user as the bridge sees it (P-Asserted-Identity or From), `[+]A-Za-z0-9._-`,
  1-64 characters; conference_list shows it as `leader` when set.
- `divert`: callers before the start get a 302 whose Contact is the target: a SIP URI as
  given, or for a service name `sip:<name>@<bridge>`, where the bridge answers, plays "this
  conference has not started yet, please call back later" and hangs up (unless a room of the
  configuration has that name). Without `divert`, early callers get 486 Busy Here.
- Participants: participant_id is the bridge's participant id; set_options takes `muted`
  and/or `dtmf_enabled` ('true'/'false', any case; at least one of them); both it and eject
  need the conference ACTIVE. Looking a conference up by both name and token requires them to
  name the same conference.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from control.api.auth import plane_of
from control.plane import ControlPlane
from control.schedule import ConferenceState
from control.store.records import Conference, Tenant
from control.usecases import conferences, participants
from control.usecases.auth import authenticate as token_owner
from control.usecases.conferences import NewConference, is_config_room
from control.usecases.errors import (
    Conflict,
    DomainError,
    Invalid,
    NameTaken,
    NotFound,
    Unauthorized,
)

PREFIX = "/aculab"
router = APIRouter(prefix=PREFIX, tags=["aculab"], include_in_schema=True)

NAME = re.compile(r"[A-Za-z0-9]{1,47}")  # "fewer than 48 alphabetic or numeric characters"
DIVERT = re.compile(r"sips?:\S{1,200}|[A-Za-z0-9._-]{1,32}")  # as the native divert_to
INTEGER = re.compile(r"[+-]?[0-9]{1,9}")
DATETIME_FORMAT = "%Y-%m-%d_%H:%M:%S"  # start_datetime, error times
MINUTE_FORMAT = "%Y-%m-%d-%H-%M"  # start_time
TIME_FORMATS = (
    (re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}_[0-9]{2}:[0-9]{2}:[0-9]{2}"), DATETIME_FORMAT),
    (re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}-[0-9]{2}-[0-9]{2}"), MINUTE_FORMAT),
)
MAX_PARTICIPANTS = (40, 350)
DURATION = (15, 480)
EXTEND = (15, 60)
MAX_TOTAL_MINUTES = 480
LEAD = timedelta(minutes=5)  # earliest start; no remove or extend closer than this
HORIZON = timedelta(hours=24)  # latest start
KEPT_COMPLETED = timedelta(hours=24)  # how long a finished reservation stays listed
REMOVED = "reservation removed"
ERRORS_LINK = "https://www.aculab.com/cloud/web-services/web-service-errors?error="
FORM = "application/x-www-form-urlencoded"


class AculabError(Exception):
    """A refusal with the HTTP status and Aculab error code to answer with."""

    def __init__(self, status: int, code: str, text: str) -> None:
        super().__init__(text)
        self.status, self.code, self.text = status, code, text


def missing(name: str) -> AculabError:
    return AculabError(400, "0001", f"Missing parameter: {name}")


def malformed(name: str, problem: str) -> AculabError:
    return AculabError(400, "0002", f"Bad parameter: {name} {problem}")


def repeated(name: str) -> AculabError:
    return AculabError(400, "0003", f"Repeated parameter: {name} given more than once")


def unauthorized(text: str) -> AculabError:
    return AculabError(401, "HTTP 401", f"Unauthorized: {text}")


def unknown(text: str) -> AculabError:
    return AculabError(404, "HTTP 404", f"Not Found: {text}")


def conflict(text: str) -> AculabError:
    return AculabError(409, "HTTP 409", f"Conflict: {text}")


def from_domain(error: DomainError) -> AculabError:
    """A use case's refusal the handlers did not expect, in the document's terms."""
    match error:
        case Invalid(field=field, problem=problem):
            return malformed(field, problem)
        case NotFound():
            return unknown(error.message)
        case Conflict():
            return conflict(error.message)
        case Unauthorized():
            return unauthorized(error.message)
    return AculabError(400, "0002", error.message)


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(DATETIME_FORMAT)


@dataclass(frozen=True)
class Call:
    """One request once authenticated: who asks, with which parameters, at what time."""

    plane: ControlPlane
    tenant: Tenant
    params: dict[str, str]
    now: datetime

    def optional(self, name: str) -> str | None:
        return self.params.get(name) or None

    def required(self, name: str) -> str:
        value = self.optional(name)
        if value is None:
            raise missing(name)
        return value

    def integer(self, name: str, low: int, high: int) -> int:
        """A required whole number within [low, high] (both edges allowed)."""
        text = self.required(name)
        if not INTEGER.fullmatch(text):
            raise malformed(name, f"'{text}' is not an integer")
        value = int(text)
        if not low <= value <= high:
            raise malformed(name, f"must be between {low} and {high}, got {value}")
        return value

    def boolean(self, name: str) -> bool | None:
        text = self.optional(name)
        if text is None:
            return None
        if text.lower() not in ("true", "false"):
            raise malformed(name, f"must be 'true' or 'false', got '{text}'")
        return text.lower() == "true"


Handler = Callable[[Call], Awaitable[Any]]


# --- request plumbing: credentials, parameters, errors ------------------------------------------


async def authenticate(request: Request, plane: ControlPlane) -> Tenant:
    """Basic credentials: the application's name and one of its API tokens."""
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        raise unauthorized("send HTTP Basic credentials (application name, API token)")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise unauthorized("malformed Basic credentials") from None
    username, colon, password = decoded.partition(":")
    application = username.rpartition("/")[2]  # "1-2-0/acme": the cloud ID is ignored
    refused = unauthorized("unknown username or API access key")
    if not colon or not password:
        raise refused
    try:
        tenant = await token_owner(plane, password)
    except Unauthorized:  # unknown or expired: the document has one answer for both
        raise refused from None
    if not hmac.compare_digest(tenant.name.encode(), application.encode()):
        raise refused
    return tenant


async def parameters(request: Request) -> dict[str, str]:
    """Query parameters, plus a form body on POST; a name given twice is refused."""
    pairs = list(request.query_params.multi_items())
    body = await request.body()
    if body:
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != FORM:
            raise malformed("body", f"must be {FORM} (got '{media_type or 'no type'}')")
        try:
            pairs += parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        except (UnicodeDecodeError, ValueError):
            raise malformed("body", "is not a valid form") from None
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            raise repeated(name)
        params[name] = value.strip()
    return params


def error_response(
    request: Request, error: AculabError, received: datetime, now: datetime
) -> JSONResponse:
    link = ERRORS_LINK + error.code if error.code[0].isdigit() else f"{request.base_url}docs"
    body = {
        "error": {
            "code": error.code,
            "text": error.text,
            "datetime": stamp(now),
            "link": link,
        },
        "request": {"url": request.url.path, "datetime": stamp(received)},
    }
    headers = {"WWW-Authenticate": 'Basic realm="aculab"'} if error.status == 401 else None
    return JSONResponse(body, status_code=error.status, headers=headers)


async def respond(request: Request, handler: Handler) -> JSONResponse:
    """Authenticate, read parameters, run the handler; refusals in Aculab's error shape."""
    plane = plane_of(request)
    received = plane.clock()
    try:
        tenant = await authenticate(request, plane)
        call = Call(plane, tenant, await parameters(request), received)
        return JSONResponse(await handler(call))
    except AculabError as error:
        return error_response(request, error, received, plane.clock())
    except DomainError as error:
        return error_response(request, from_domain(error), received, plane.clock())


# --- looking conferences up ------------------------------------------------------------------


async def by_token(call: Call, token: str) -> Conference:
    """A reservation token names one of this application's reserved conferences."""
    refused = unknown(f"reservation_token '{token}' is not a reservation of yours")
    try:
        conference = await conferences.find_by_id(call.plane, call.tenant, token)
    except NotFound:
        raise refused from None
    if conference.start_at is None:
        raise refused
    return conference


async def by_name(call: Call, name: str) -> Conference:
    try:
        return await conferences.find(call.plane, call.tenant, name)
    except NotFound:
        raise unknown(f"conference_name '{name}' is not a conference of yours") from None


async def target(call: Call) -> Conference:
    """The conference named by conference_name, or by reservation_token instead."""
    name, token = call.optional("conference_name"), call.optional("reservation_token")
    if token is not None:
        conference = await by_token(call, token)
        if name is not None and name != conference.name:
            raise malformed("reservation_token", f"is not the reservation of '{name}'")
        return conference
    if name is None:
        raise missing("conference_name")
    return await by_name(call, name)


def participant_gone(conference: Conference, participant_id: str) -> AculabError:
    return unknown(f"participant_id '{participant_id}' is not in '{conference.name}'")


def require_active(conference: Conference, action: str) -> None:
    if conference.state != ConferenceState.ACTIVE:
        raise conflict(f"{action} needs the conference ACTIVE; it is {conference.state}")


# --- reservations ----------------------------------------------------------------------------


def parse_start(text: str) -> datetime:
    """Either document format, UTC, rounded down to the minute."""
    for pattern, layout in TIME_FORMATS:
        if pattern.fullmatch(text):
            try:
                moment = datetime.strptime(text, layout).replace(tzinfo=UTC)
            except ValueError:
                raise malformed("start_time", f"'{text}' is not a valid time") from None
            return moment.replace(second=0)
    raise malformed("start_time", f"'{text}' is not YYYY-MM-DD_hh:mm:ss or YYYY-MM-DD-hh-mm")


def start_of(call: Call) -> datetime:
    start = parse_start(call.required("start_time"))
    if start - call.now < LEAD:
        raise malformed("start_time", "must be at least 5 minutes in the future")
    if start - call.now > HORIZON:
        raise malformed("start_time", "must be no more than 24 hours in the future")
    return start


def name_of(call: Call) -> str:
    name = call.required("conference_name")
    if not NAME.fullmatch(name):
        raise malformed("conference_name", "must be fewer than 48 letters or digits")
    if is_config_room(call.plane.config, name):
        raise conflict(f"conference_name '{name}' is a room of the bridge's configuration")
    return name


LEADER = re.compile(r"[+]?[A-Za-z0-9._-]{1,64}")  # as the native leader: a caller's number


def leader_of(call: Call) -> str | None:
    leader = call.optional("leader")
    if leader is not None and not LEADER.fullmatch(leader):
        raise malformed("leader", "must be a caller's number or SIP user ([+]A-Za-z0-9._-, 1-64)")
    return leader


def divert_of(call: Call) -> str | None:
    divert = call.optional("divert")
    if divert is not None and not DIVERT.fullmatch(divert):
        raise malformed("divert", "must be a service name ([A-Za-z0-9._-], 1-32) or a SIP URI")
    return divert


async def reservation_create(call: Call) -> dict[str, Any]:
    name = name_of(call)
    max_participants = call.integer("max_participants", *MAX_PARTICIPANTS)
    start = start_of(call)
    duration = call.integer("duration", *DURATION)
    divert = divert_of(call)
    leader = leader_of(call)
    spec = NewConference(
        name=name,
        start_time=start,
        duration_minutes=duration,
        max_participants=max_participants,
        divert_to=divert,
        leader=leader,
    )
    try:
        conference = await conferences.create(call.plane, call.tenant, spec)
    except NameTaken:
        raise conflict(f"conference_name '{name}' is already present") from None
    return {"reservation_token": conference.id}


async def reservation_modify(call: Call) -> dict[str, Any]:
    token = call.required("reservation_token")
    extend = call.integer("duration", *EXTEND)
    conference = await by_token(call, token)
    if conference.state == ConferenceState.COMPLETED:
        raise conflict("the conference is COMPLETED")
    if conference.duration_s is None or conference.end_at is None:
        raise conflict("the conference has no duration to extend")
    total = conference.duration_s // 60 + extend
    if total > MAX_TOTAL_MINUTES:
        raise malformed("duration", f"would make the conference {total} minutes, over 480")
    if conference.end_at - call.now < LEAD:
        raise conflict("the conference is due to finish within 5 minutes")
    await conferences.set_duration(call.plane, conference, total)
    return {"extended": True}


async def reservation_remove(call: Call) -> dict[str, Any]:
    conference = await by_token(call, call.required("reservation_token"))
    if conference.state != ConferenceState.RESERVED:
        raise conflict(f"only a RESERVED conference can be removed; it is {conference.state}")
    assert conference.start_at is not None
    if conference.start_at - call.now < LEAD:
        raise conflict("the conference is due to start within 5 minutes")
    await conferences.end(call.plane, conference, REMOVED)
    return {"removed": True}


# --- listing -----------------------------------------------------------------------------------


def listed(conference: Conference, now: datetime) -> bool:
    if conference.state != ConferenceState.COMPLETED:
        return True
    return (
        conference.start_at is not None
        and conference.end_reason != REMOVED
        and conference.ended_at is not None
        and now - conference.ended_at <= KEPT_COMPLETED
    )


def conference_entry(plane: ControlPlane, conference: Conference) -> dict[str, Any]:
    """The document's fields, reservation ones only for a reserved conference."""
    entry: dict[str, Any] = {}
    start = conference.start_at
    if start is not None:
        entry["reservation_token"] = conference.id
    entry["conference_name"] = conference.name
    entry["max_participants"] = conference.max_participants or plane.config.rooms.max_participants
    if start is not None:
        entry["start_time"] = start.astimezone(UTC).strftime(MINUTE_FORMAT)
        entry["start_datetime"] = stamp(start)
        if conference.duration_s is not None:
            entry["duration"] = conference.duration_s // 60
        if conference.divert_to:
            entry["divert"] = conference.divert_to
    if conference.leader:
        entry["leader"] = conference.leader
    entry["status"] = conference.state
    return entry


async def conference_list(call: Call) -> list[dict[str, Any]]:
    found = await conferences.every(call.plane, call.tenant)
    return [conference_entry(call.plane, c) for c in found if listed(c, call.now)]


# --- participants ------------------------------------------------------------------------------


async def participant_list(call: Call) -> dict[str, Any]:
    conference = await target(call)
    people = []
    if conference.state in (ConferenceState.HOLDING, ConferenceState.ACTIVE):
        people = [
            {"participant_id": p.id, "muted": p.muted, "dtmf_enabled": p.dtmf_enabled}
            for p in participants.in_conference(call.plane, conference)
        ]
    return {"status": conference.state, "participants": people}


async def participant_set_options(call: Call) -> dict[str, Any]:
    participant_id = call.required("participant_id")
    muted, dtmf_enabled = call.boolean("muted"), call.boolean("dtmf_enabled")
    if muted is None and dtmf_enabled is None:
        raise missing("muted or dtmf_enabled")
    conference = await target(call)
    require_active(conference, "setting options")
    options = {"muted": muted, "dtmf_enabled": dtmf_enabled}
    given = {name: value for name, value in options.items() if value is not None}
    try:
        participants.update(call.plane, conference, participant_id, given)
    except NotFound:
        raise participant_gone(conference, participant_id) from None
    return {"options_set": True}


async def participant_eject(call: Call) -> dict[str, Any]:
    participant_id = call.required("participant_id")
    conference = await target(call)
    require_active(conference, "ejecting")
    try:
        participants.eject(call.plane, conference, participant_id)
    except NotFound:
        raise participant_gone(conference, participant_id) from None
    return {"ejected": True}


# --- routes: the document's service actions, GET and POST each -------------------------------

ACTIONS: tuple[tuple[str, Handler, str, tuple[str, ...]], ...] = (
    (
        "conference_reservation_create",
        reservation_create,
        "Reserve a conference.",
        ("conference_name*", "max_participants*", "start_time*", "duration*", "divert", "leader"),
    ),
    (
        "conference_reservation_modify",
        reservation_modify,
        "Extend a reservation by `duration` minutes.",
        ("reservation_token*", "duration*"),
    ),
    (
        "conference_reservation_remove",
        reservation_remove,
        "Remove a RESERVED conference not due to start within 5 minutes.",
        ("reservation_token*",),
    ),
    ("conference_list", conference_list, "The application's reserved and current conferences.", ()),
    (
        "conference_participant_list",
        participant_list,
        "Status and participants of a conference.",
        ("conference_name", "reservation_token"),
    ),
    (
        "conference_participant_set_options",
        participant_set_options,
        "Set muted / dtmf_enabled of a participant of an ACTIVE conference.",
        ("conference_name", "reservation_token", "participant_id*", "muted", "dtmf_enabled"),
    ),
    (
        "conference_participant_eject",
        participant_eject,
        "Eject a participant from an ACTIVE conference.",
        ("conference_name", "reservation_token", "participant_id*"),
    ),
)


def query_parameters(names: tuple[str, ...]) -> list[dict[str, Any]]:
    """For the OpenAPI page only: the endpoint reads query and form itself ("*": required)."""
    return [
        {
            "name": name.rstrip("*"),
            "in": "query",
            "required": name.endswith("*"),
            "schema": {"type": "string"},
        }
        for name in names
    ]


def endpoint_for(handler: Handler) -> Callable[[Request], Awaitable[JSONResponse]]:
    async def endpoint(request: Request) -> JSONResponse:
        return await respond(request, handler)

    return endpoint


def install_routes() -> None:
    """One route per action and verb, so each has its own OpenAPI operation id."""
    for action, handler, summary, names in ACTIONS:
        for verb in ("GET", "POST"):
            router.add_api_route(
                f"/{action}",
                endpoint_for(handler),
                methods=[verb],
                name=f"aculab_{action}_{verb.lower()}",
                operation_id=f"aculab_{action}_{verb.lower()}",
                summary=summary,
                response_class=JSONResponse,
                openapi_extra={"parameters": query_parameters(names)},
            )


install_routes()
