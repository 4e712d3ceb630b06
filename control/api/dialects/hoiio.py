"""The Hoiio dialect: `conference/call` dials a list of numbers one after another into a room,
answers `{"txn_refs", "room", "status"}` or `{"status": "error_..."}`, and notifies
`notify_url` when each call ends (seed document 001).

Choices where the document is silent:
- Path: `/open/conference/call` (the document's URL minus the host, so a client only changes its
  base URL), plus `/open/voice/conference`, the name Hoiio's own SDKs (Java, Python) call.
- Parameters come from the query string (GET) or an `application/x-www-form-urlencoded` body
  (POST; body values override query values; a repeated name keeps its last value). Another
  content type with a body, bytes that are not UTF-8, or control characters in a value are
  `error_malformed_params`. Unknown parameters are ignored; an empty value counts as missing.
- Every answer is HTTP 200 with the JSON body (an invalid method too, with `Allow: GET, POST`):
  the document defines outcomes only by `status`, and clients branch on it (some HTTP clients
  treat a 4xx as a transport failure and never read the body).
- `app_id` is the application's name or id; `access_token` one of its tokens (the admin route's
  bearer tokens). Checks run in this order, the first failure answers: method, readable
  parameters, app_id/access_token present, app id known, token belongs to that app, rate limit,
  dest present and valid, room id syntax, caller_id, tag, notify_url, destination routable, room
  ownership and capacity, concurrent calls. Nothing is created or dialled unless all pass.
- `dest`: 1 to `dialout.max_destinations` (8) comma-separated E.164 numbers (`+`, then 2 to 15
  digits not starting with 0), each stripped of surrounding spaces; SIP URIs are refused
  (`error_dest_invalid`). Numbers go to `dialout.trunk`; with no trunk configured (or a trunk
  that does not resolve) the answer is `error_dest_not_supported`.
- `room`: omitted -> a new generated id (`c` and 9 digits). The application's open room of that
  id is reused; an id it has no open room of creates an open, unreserved conference with at
  most 8 participants, under the application's private name when another application, the
  configuration file or a caller holds that name (`hoiio_rooms.py`: ids are per application,
  and the answer never tells which happened). The application's own room while still RESERVED
  is `error_invalid_room`. A request that would
  put more than 8 people in the room (present participants plus calls still being placed plus
  this request's numbers) is `error_invalid_room` too: the document names no status for a full
  room and the room is what cannot take them. Dial-in callers beyond 8 get 486 from the bridge.
- `caller_id`: an E.164 number, or "private" (anonymous, `Privacy: id`); omitted -> the
  configured `dialout.caller_id`, else the room id. Anything else is `error_caller_id_invalid`,
  the status Hoiio's SDKs name for it (the document lists no caller-id error).
- `tag`: at most 256 characters (`error_tag_invalid_length`).
- `notify_url`: an absolute http/https URL with a host, at most 2048 characters
  (`error_invalid_notify_url`); its host must resolve within 2 s
  (`error_unable_to_resolve_notify_url`).
- Rate limit: a token bucket per application of `RATE_BURST` requests refilled at
  `RATE_PER_S` a second, on the control plane's clock; every request that names a valid
  application and token takes one, whatever its outcome (`error_rate_limit_exceeded`).
- Concurrent calls: `dialout.max_concurrent` (8) calls queued or up per application
  (`error_concurrent_call_limit_reached`).
- `txn_refs` are the control plane's dial-out references, in the order of `dest`.
- Never arising here: `error_not_allowed_for_trial`, `error_insufficient_credit` (no billing);
  an unexpected exception answers `error_internal_server_error`.
- Notifications (`notification_fields`): a form-encoded POST per ended call with the document's
  names: dest, call_status_dest, txn_ref, tag (only when given), date (the call's start in GMT+8,
  "YYYY-MM-DD HH:MM:SS"), duration (whole minutes, rounded up), currency, rate, debit (decimal
  strings, at least 2 places), plus call_state=ended, which the document's conditions refer to.
"""

from __future__ import annotations

import asyncio
import re
import socket
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, NoReturn
from urllib.parse import parse_qsl, urlsplit

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from control.api.auth import plane_of
from control.api.dialects.hoiio_rooms import private_name, public_id
from control.dialout import E164
from control.plane import ControlPlane
from control.schedule import ConferenceState
from control.store.records import Conference, Tenant
from control.usecases import calls, conferences
from control.usecases.auth import authenticate as token_owner
from control.usecases.conferences import NewConference
from control.usecases.errors import (
    DomainError,
    Invalid,
    LimitExceeded,
    NameTaken,
    NameUnavailable,
    NotFound,
    Unauthorized,
)

log = structlog.get_logger(__name__)

router = APIRouter(tags=["hoiio"])

PATHS = ("/open/conference/call", "/open/voice/conference")
ALLOWED_METHODS = ("GET", "POST")
OTHER_METHODS = ["PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE"]
FORM = "application/x-www-form-urlencoded"
ROOM = re.compile(r"^[A-Za-z0-9._]{1,32}$")
MAX_TAG = 256
MAX_URL = 2048
ROOM_CAPACITY = 8  # "Each conference room allows a maximum of 8 active participants."
RATE_BURST = 10  # requests an application may make at once ...
RATE_PER_S = 1.0  # ... and sustained, per second
RESOLVE_TIMEOUT_S = 2.0
GMT8 = timezone(timedelta(hours=8))


class HoiioError(Exception):
    """A request refused with one of the document's `error_*` statuses."""

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


def fail(status: str) -> NoReturn:
    raise HoiioError(status)


def answer(body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    """Always 200: the status is in the body (see the module docstring)."""
    return JSONResponse(body, status_code=200, headers=headers)


# --- rate limit -------------------------------------------------------------------------------


@dataclass
class TokenBucket:
    tokens: float
    updated: float

    def take(self, now: float) -> bool:
        """One request at `now` (seconds): True when a token was left."""
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(float(RATE_BURST), self.tokens + elapsed * RATE_PER_S)
        self.updated = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


@dataclass
class RateLimiter:
    """One bucket per application, kept on the FastAPI app (so per running server)."""

    buckets: dict[str, TokenBucket] = field(default_factory=dict)

    def allow(self, key: str, now: float) -> bool:
        bucket = self.buckets.setdefault(key, TokenBucket(float(RATE_BURST), now))
        return bucket.take(now)


def limiter_of(request: Request) -> RateLimiter:
    state = request.app.state
    limiter = getattr(state, "hoiio_limiter", None)
    if limiter is None:
        limiter = RateLimiter()
        state.hoiio_limiter = limiter
    return limiter


# --- parameters -------------------------------------------------------------------------------


def parse_params(raw: bytes) -> dict[str, str]:
    """Form or query bytes as a dict; unreadable bytes are error_malformed_params."""
    try:
        text = raw.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    except (UnicodeDecodeError, ValueError):
        fail("error_malformed_params")
    for _, value in pairs:
        if any(unicodedata.category(c) == "Cc" and c not in "\t\r\n" for c in value):
            fail("error_malformed_params")
    return {name: value.strip() for name, value in pairs}


async def read_params(request: Request) -> dict[str, str]:
    params = parse_params(request.scope.get("query_string", b""))
    if request.method == "POST":
        body = await request.body()
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if body and kind not in ("", FORM):
            fail("error_malformed_params")
        params.update(parse_params(body))
    return params


def required(params: dict[str, str], name: str) -> str:
    value = params.get(name, "")
    if not value:
        fail(f"error_{name}_param_missing")
    return value


async def authenticate(plane: ControlPlane, params: dict[str, str]) -> Tenant:
    app_id = required(params, "app_id")
    token = required(params, "access_token")
    tenant = await plane.store.tenants.get_tenant(app_id)
    if tenant is None:
        fail("error_invalid_app_id")
    try:
        owner = await token_owner(plane, token)
    except Unauthorized:  # unknown or expired alike
        fail("error_invalid_access_token")
    if owner.id != tenant.id:
        fail("error_invalid_access_token")
    return tenant


def destinations(params: dict[str, str], limit: int) -> list[str]:
    dests = [item.strip() for item in required(params, "dest").split(",")]
    if len(dests) > limit or not all(E164.match(d) for d in dests):
        fail("error_dest_invalid")
    return dests


def room_param(params: dict[str, str]) -> str | None:
    room = params.get("room", "")
    if not room:
        return None
    if not ROOM.match(room):
        fail("error_invalid_room")
    return room


def caller_param(params: dict[str, str]) -> tuple[str, bool]:
    """(caller id, "" for the default; private)."""
    caller = params.get("caller_id", "")
    if not caller:
        return "", False
    if caller.lower() == "private":
        return "", True
    if not E164.match(caller):
        fail("error_caller_id_invalid")
    return caller, False


def tag_param(params: dict[str, str]) -> str:
    tag = params.get("tag", "")
    if len(tag) > MAX_TAG:
        fail("error_tag_invalid_length")
    return tag


async def notify_url_param(params: dict[str, str]) -> str | None:
    url = params.get("notify_url", "")
    if not url:
        return None
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        fail("error_invalid_notify_url")
    if len(url) > MAX_URL or parts.scheme.lower() not in ("http", "https") or not host:
        fail("error_invalid_notify_url")
    await resolvable(host, port)
    return url


async def resolvable(host: str, port: int | None) -> None:
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_S
        )
    except (OSError, TimeoutError, UnicodeError):
        fail("error_unable_to_resolve_notify_url")


# --- the room ---------------------------------------------------------------------------------


async def own_open_room(plane: ControlPlane, tenant: Tenant, room_id: str) -> Conference | None:
    """The application's open room of that id (under its plain or its private name);
    error_invalid_room when it cannot take calls yet."""
    for name in (room_id, private_name(tenant, room_id)):
        try:
            conference = await conferences.find(plane, tenant, name)
        except NotFound:
            continue
        if conference.state == ConferenceState.COMPLETED:
            continue
        if conference.state == ConferenceState.RESERVED:
            fail("error_invalid_room")
        return conference
    return None


async def check_room(plane: ControlPlane, tenant: Tenant, room: str | None, count: int) -> None:
    """error_invalid_room when the room is not the application's to use, or `count` more
    people would make it hold more than ROOM_CAPACITY."""
    conference = None if room is None else await own_open_room(plane, tenant, room)
    if conference is None:
        return
    if calls.load(plane, conference.name) + count > ROOM_CAPACITY:
        fail("error_invalid_room")


async def create_room(plane: ControlPlane, tenant: Tenant, name: str | None) -> str:
    """A new open conference for the application (generated id when `name` is None), under
    its private name when the plain one is not the application's to take."""
    name = name or conferences.new_name()
    try:
        conferences.check_name_free(plane, tenant, name)
    except NameUnavailable:
        name = private_name(tenant, name)
    spec = NewConference(name=name, max_participants=ROOM_CAPACITY)
    try:
        created = await conferences.create(plane, tenant, spec)
    except NameTaken:
        if name is not None:
            conference = await own_open_room(plane, tenant, public_id(name))  # a race with us?
            if conference is not None:
                return conference.name
        fail("error_invalid_room")
    except DomainError:
        fail("error_invalid_room")
    return created.name


# --- the route --------------------------------------------------------------------------------


@dataclass
class CallOrder:
    """A checked `conference/call` request."""

    tenant: Tenant
    dests: list[str]
    room: str | None
    caller_id: str
    private: bool
    tag: str
    notify_url: str | None


async def check(plane: ControlPlane, request: Request, params: dict[str, str]) -> CallOrder:
    tenant = await authenticate(plane, params)
    if not limiter_of(request).allow(tenant.id, plane.clock().timestamp()):
        fail("error_rate_limit_exceeded")
    dests = destinations(params, plane.config.dialout.max_destinations)
    room = room_param(params)
    caller_id, private = caller_param(params)
    if caller_id:
        try:
            calls.check_caller_id(plane, tenant, caller_id)  # before a room is made for it
        except Invalid:
            fail("error_caller_id_invalid")
    tag = tag_param(params)
    notify_url = await notify_url_param(params)
    if not plane.config.dialout.trunk:
        fail("error_dest_not_supported")
    await check_room(plane, tenant, room, len(dests))
    if calls.active_count(plane, tenant) + len(dests) > plane.config.dialout.max_concurrent:
        fail("error_concurrent_call_limit_reached")
    return CallOrder(tenant, dests, room, caller_id, private, tag, notify_url)


async def place(plane: ControlPlane, order: CallOrder) -> dict[str, Any]:
    own = None if order.room is None else await own_open_room(plane, order.tenant, order.room)
    room = own.name if own is not None else await create_room(plane, order.tenant, order.room)
    try:
        placed = await calls.place(
            plane,
            order.tenant,
            room,
            order.dests,
            caller_id=order.caller_id,
            private=order.private,
            tag=order.tag,
            notify_url=order.notify_url,
            notify_format=notification_fields,
        )
    except Invalid:
        fail("error_dest_not_supported")  # our own checks passed: the trunk does not resolve
    except LimitExceeded:
        fail("error_concurrent_call_limit_reached")
    except DomainError:  # the room ended or was reserved meanwhile
        fail("error_invalid_room")
    return {"txn_refs": [c.ref for c in placed], "room": public_id(room), "status": "success_ok"}


async def conference_call(request: Request) -> JSONResponse:
    """`conference/call`: dial `dest` one after another into `room`."""
    plane = plane_of(request)
    try:
        params = await read_params(request)
        return answer(await place(plane, await check(plane, request, params)))
    except HoiioError as exc:
        return answer({"status": exc.status})
    except Exception:
        log.exception("hoiio.internal_error")
        return answer({"status": "error_internal_server_error"})


async def wrong_method(request: Request) -> JSONResponse:
    """Only GET and POST are allowed (`error_invalid_http_method`)."""
    return answer({"status": "error_invalid_http_method"}, {"Allow": ", ".join(ALLOWED_METHODS)})


DESCRIPTION = (
    "Parameters in the query (GET) or a form body (POST): app_id*, access_token*, dest* "
    "(comma-separated E.164, at most 8), room, caller_id, tag, notify_url. Always HTTP 200; "
    "the outcome is `status`."
)

for _path in PATHS:
    for _method in ALLOWED_METHODS:
        router.add_api_route(
            _path,
            conference_call,
            methods=[_method],
            name=f"hoiio_conference_call_{_method.lower()}",
            summary="Hoiio conference/call",
            description=DESCRIPTION,
            include_in_schema=_path == PATHS[0],
        )
    router.add_api_route(_path, wrong_method, methods=OTHER_METHODS, include_in_schema=False)


# --- notifications ----------------------------------------------------------------------------


def money(value: Any) -> str:
    """A decimal string with 2 to 4 places: 0 -> "0.00", 0.015 -> "0.015"."""
    text = f"{float(value or 0):.4f}".rstrip("0")
    whole, _, places = text.partition(".")
    return f"{whole}.{places.ljust(2, '0')}"


def gmt8(iso_time: str | None) -> str:
    """An ISO 8601 UTC time as the document's "YYYY-MM-DD HH:MM:SS" in GMT+8."""
    if not iso_time:
        return ""
    moment = datetime.fromisoformat(iso_time.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(GMT8).strftime("%Y-%m-%d %H:%M:%S")


def notification_fields(data: dict[str, Any]) -> dict[str, str]:
    """The outbox's `call.notification` data as the document's form fields (see the module
    docstring); meant for a form-encoded POST to notify_url."""
    fields = {
        "txn_ref": str(data["txn_ref"]),
        "dest": str(data["dest"]),
        "call_state": "ended",
        "call_status_dest": str(data["call_status"]),
        "date": gmt8(data.get("date")),
        "duration": str(int(data.get("duration") or 0)),
        "currency": str(data.get("currency") or ""),
        "rate": money(data.get("rate")),
        "debit": money(data.get("debit")),
    }
    if data.get("tag"):
        fields["tag"] = str(data["tag"])
    return fields
