"""The Orange click-to-conf dialect (seeds 000 and 003): REST-RPC verbs `createConference`,
`addCaller` and `createCall` under `/conf/{verb}.xml` (or `.json`), by GET (query string) or POST
(query string and/or an `application/x-www-form-urlencoded` body), each identified by the `id`
access key, each answered with `response/status/status_code` and `status_msg` plus a payload.

Mapping onto the native plane: `id` is an application's API token; a conference is a native
conference whose name is the Orange conference id; createCall is a dial-out into it
(the guest answers and, unless `call_confirmation` is false, presses # to join).

Choices where the documents are silent:
- Path: `/conf/<verb>.<format>`, the documents' own path (`.../conf/createConference.xml`), so a
  client only changes its host. Formats: `xml` and `json`; a missing or other suffix, or another
  verb, is status 404 (answered in XML).
- HTTP status is always 200 and the outcome is in `status_code`: the documents' clients
  (PHP `file_get_contents`, `simplexml`) read `status_code` from the body, even for errors
  (the location example tests `status_code == 450`), which an HTTP error status would prevent.
- Status codes (the documents only show 200): 200 OK; 400 a parameter missing or invalid;
  401 the `id` access key missing or unknown; 404 unknown verb or unknown conference (another
  application's conference is unknown too); 409 the conference is over (addCaller,
  createCall) or not started yet (createCall); 429 too many calls up at once for the
  application; 500 an unexpected failure. `status_msg` is "OK", or starts with the name of the
  parameter at fault ("duration: ...").
- JSON is the XML tree as objects: `{"response": {"status": {"status_code": 200,
  "status_msg": "OK"}, "conference": {...}}}`; numbers stay numbers, lists stay lists (XML puts
  each item in a singular element: `<callers><caller>...</caller></callers>`).
- createConference: `access_mode` is `none` (default: the documents' own PHP example sends it
  under a wrong name), `room`, `caller` or `room+caller`, in any case (`room caller` is accepted
  too, as a browser turns an unencoded `+` into a space); `duration` in minutes, 1..120,
  default 120 (the documents' two-hour maximum, "depending on the conference start time");
  `start_date` in ISO 8601 (`2010-06-16T14:30:00+02:00`; no offset means UTC), default now,
  not in the past; `callers` a comma-separated list of numbers (required non-empty in `caller`
  mode). The
  conference id is six hex characters like the documents' `12a34b`; the room code (room modes)
  is generated, six digits. `phone_number` is the room's SIP address (the bridge's dial-in).
- Access mode `none` (no incoming calls, only createCall) is a native `none` room that is
  locked: dial-ins get 403, calls out still join.
- addCaller: `conference_id` and `caller` (one number or SIP user name; the bridge recognises
  callers by P-Asserted-Identity or From); allowed in every mode, before or during the
  conference (seed 003: "in other modes they can be added later"); adding twice is harmless.
- createCall works like click-to-call: `from` is the guest the conference calls, `to` the
  conference id (`12a34b` or the VoiceMashup form `conf:12a34b`). `from` is an international
  number (`33612345678` or `+33612345678`, routed to the configured trunk as `+33612345678`)
  or, beyond the documents, a `sip:` URI called directly. The click-to-call options (seed 003:
  "l'affichage des numéros, la durée maximale de l'appel, ou la confirmation de l'appel"):
  `call_confirmation` true/false (also 1/0, yes/no, on/off; PHP's `true` is sent as `1`):
  the guest hears "press # to join" and joins on # only when it is true; absent, it is true,
  as seed 003 describes the conference's calls out ("décroche, confirme en appuyant sur #").
  `display_number`: the number the guest sees (an international number, or `private` for an
  anonymous call); absent: `dialout.caller_id`, or the conference id. `max_duration`: the
  call's own limit in whole seconds (at least 1); the bridge hangs up that long after the
  guest answers. Whatever is asked, a call lasts at most the 2-hour per-call limit
  (`dialout.max_call_s`) and never past the conference's end: a larger value is capped, not
  refused. The answer gives the call's `id` and the `max_duration` (seconds) that applies.
- Unknown parameters are ignored (REST-RPC clients add their own); when a parameter is given
  twice, the last value counts, and a form body overrides the query string.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl
from xml.etree import ElementTree as ET

import structlog
from fastapi import APIRouter, Request, Response
from pydantic import ValidationError

from bridge.config import ACCESS_MODES
from control.api.auth import plane_of
from control.api.schemas import ConferenceCreate
from control.api.views import dial_in
from control.plane import ControlPlane
from control.schedule import ConferenceState
from control.store.records import Conference, Tenant
from control.usecases import callers, calls, conferences
from control.usecases.auth import authenticate
from control.usecases.conferences import NewConference
from control.usecases.errors import (
    Conflict,
    DomainError,
    Invalid,
    LimitExceeded,
    NotFound,
    Unauthorized,
)

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/conf", tags=["orange"])

MAX_DURATION_MIN = 120  # "maximum of 2 hours (depending on the conference start time)"
INTERNATIONAL = re.compile(r"^\+?[1-9][0-9]{1,14}$")
DIGITS = re.compile(r"^[0-9]+$")
ITEM_TAGS = {"callers": "caller"}  # XML element of each item of a list
NATIVE_FIELDS = {  # the native API's field names, as this dialect calls them
    "start_time": "start_date",
    "duration_minutes": "duration",
    "access": "access_mode",
    "callers": "callers",
    "name": "id",
}
Params = Mapping[str, str]


class OrangeError(Exception):
    """An answer other than 200: its status_code and a status_msg naming the parameter."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def bad(param: str, problem: str) -> OrangeError:
    return OrangeError(400, f"{param}: {problem}")


# --- rendering ---------------------------------------------------------------------------------


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _append(parent: ET.Element, tag: str, value: Any) -> None:
    element = ET.SubElement(parent, tag)
    if isinstance(value, dict):
        for key, inner in value.items():
            _append(element, key, inner)
    elif isinstance(value, list):
        for item in value:
            _append(element, ITEM_TAGS.get(tag, "item"), item)
    else:
        element.text = _text(value)


def render(fmt: str, code: int, message: str, payload: dict[str, Any]) -> Response:
    """The documents' envelope: response/status/{status_code,status_msg}, then the payload."""
    status = {"status_code": code, "status_msg": message}
    if fmt == "json":
        body = {"response": {"status": status, **payload}}
        return Response(json.dumps(body), media_type="application/json")
    root = ET.Element("response")
    _append(root, "status", status)
    for key, value in payload.items():
        _append(root, key, value)
    xml = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return Response(xml, media_type="application/xml; charset=utf-8")


# --- request parameters ------------------------------------------------------------------------


async def read_params(request: Request) -> dict[str, str]:
    """Query string, then a form body over it (the documents use GET and POST alike)."""
    params = dict(request.query_params)
    body = await request.body()
    if not body.strip():
        return params
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise bad("body", "send parameters in the query string or as a urlencoded form")
    params.update(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))
    return params


def required(params: Params, name: str) -> str:
    value = params.get(name, "").strip()
    if not value:
        raise bad(name, "missing parameter")
    return value


async def tenant_of(plane: ControlPlane, params: Params) -> Tenant:
    key = params.get("id", "").strip()
    if not key:
        raise OrangeError(401, "id: missing access key")
    try:
        return await authenticate(plane, key)
    except Unauthorized:  # unknown or expired alike
        raise OrangeError(401, "id: invalid access key") from None


def access_mode_of(params: Params) -> str:
    mode = params.get("access_mode", "").strip().lower() or "none"
    mode = "room+caller" if mode == "room caller" else mode
    if mode not in ACCESS_MODES:
        raise bad("access_mode", f"{mode!r} is not one of {', '.join(ACCESS_MODES)}")
    return mode


def duration_of(params: Params) -> int:
    raw = params.get("duration", "").strip()
    if not raw:
        return MAX_DURATION_MIN
    if not DIGITS.match(raw) or not 1 <= int(raw) <= MAX_DURATION_MIN:
        raise bad("duration", f"must be a whole number of minutes from 1 to {MAX_DURATION_MIN}")
    return int(raw)


def start_of(params: Params) -> datetime | None:
    raw = params.get("start_date", "").strip()
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise bad(
            "start_date", "must be an ISO 8601 date, e.g. 2010-06-16T14:30:00+02:00"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def callers_of(params: Params) -> list[str]:
    return [c.strip() for c in params.get("callers", "").split(",") if c.strip()]


def conference_name(raw: str) -> str:
    """`12a34b` or the VoiceMashup form `conf:12a34b`."""
    return raw[5:] if raw.lower().startswith("conf:") else raw


def guest_of(raw: str) -> str:
    """An international number for the trunk (+ and digits), or a SIP URI called directly."""
    if raw.lower().startswith("sip:"):
        return raw
    if not INTERNATIONAL.match(raw):
        raise bad("from", f"{raw!r} is not an international number (country code and digits)")
    return raw if raw.startswith("+") else f"+{raw}"


# --- translation of native errors --------------------------------------------------------------


def orange_message(message: str) -> str:
    """`start_time: ...` from the native API becomes `start_date: ...`."""
    field, sep, problem = message.partition(": ")
    if sep and field.split(".")[0] in NATIVE_FIELDS:
        return f"{NATIVE_FIELDS[field.split('.')[0]]}: {problem}"
    return message


def from_validation(exc: ValidationError) -> OrangeError:
    error = exc.errors()[0]
    field = str(error["loc"][0]) if error.get("loc") else "request"
    return bad(NATIVE_FIELDS.get(field, field), str(error.get("msg", "invalid")))


def from_domain(error: DomainError) -> OrangeError:
    """A use case's refusal as a status_code and a status_msg in this dialect's names."""
    match error:
        case Invalid():
            code = 400
        case NotFound():
            code = 404
        case Conflict():
            code = 409
        case LimitExceeded():
            code = 429
        case Unauthorized():
            code = 401
        case _:
            code = 500
    return OrangeError(code, orange_message(error.message))


# --- views -------------------------------------------------------------------------------------


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def conference_payload(plane: ControlPlane, conference: Conference) -> dict[str, Any]:
    return {
        "id": conference.name,
        "access_mode": conference.access,
        "room_code": conference.code,
        "phone_number": dial_in(plane, conference.name),
        "start_date": iso(conference.start_at or conference.created_at),
        "end_date": iso(conference.end_at),
        "duration": None if conference.duration_s is None else conference.duration_s // 60,
        "state": conference.state,
        "callers": list(conference.callers),
    }


# --- verbs -------------------------------------------------------------------------------------


async def create_conference(plane: ControlPlane, tenant: Tenant, params: Params) -> dict[str, Any]:
    """A native conference; mode `none` is locked so that only calls out reach it."""
    mode = access_mode_of(params)
    duration = duration_of(params)
    start = start_of(params)
    numbers = callers_of(params)
    if mode == "caller" and not numbers:
        raise bad("callers", "access mode 'caller' needs at least one caller")
    for _ in range(5):
        try:
            body = ConferenceCreate(
                name=secrets.token_hex(3),
                access=mode,  # type: ignore[arg-type]
                start_time=start,
                duration_minutes=duration,
                callers=numbers,
                locked=mode == "none",
            )
            conference = await conferences.create(plane, tenant, NewConference(**body.model_dump()))
        except ValidationError as exc:
            raise from_validation(exc) from None
        except Conflict:
            continue  # the generated id is taken: draw another
        return {"conference": conference_payload(plane, conference)}
    raise OrangeError(500, "id: no free conference id, try again")


async def known_conference(plane: ControlPlane, tenant: Tenant, param: str, raw: str) -> Conference:
    name = conference_name(raw)
    try:
        conference = await conferences.find(plane, tenant, name)
    except NotFound:
        raise OrangeError(404, f"{param}: unknown conference {name!r}") from None
    if conference.state == ConferenceState.COMPLETED:
        raise OrangeError(409, f"{param}: conference {name!r} is over")
    return conference


async def add_caller(plane: ControlPlane, tenant: Tenant, params: Params) -> dict[str, Any]:
    """Allow a number into a conference, before or during it."""
    raw = required(params, "conference_id")
    number = required(params, "caller")
    conference = await known_conference(plane, tenant, "conference_id", raw)
    try:
        ConferenceCreate(callers=[number])
    except ValidationError as exc:
        raise bad("caller", f"{number!r}: {exc.errors()[0].get('msg', 'invalid')}") from None
    conference = await callers.add(plane, conference, number)
    return {"conference": conference_payload(plane, conference)}


TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")


def confirmation_of(params: Params) -> bool:
    raw = params.get("call_confirmation", "").strip().lower()
    if not raw:
        return True
    if raw not in TRUE_WORDS + FALSE_WORDS:
        raise bad("call_confirmation", f"{raw!r} is not true or false")
    return raw in TRUE_WORDS


def display_of(params: Params) -> tuple[str | None, bool]:
    """(the number shown to the guest or None for the default; anonymous)."""
    raw = params.get("display_number", "").strip()
    if not raw:
        return None, False
    if raw.lower() == "private":
        return None, True
    if not INTERNATIONAL.match(raw):
        raise bad("display_number", f"{raw!r} is not an international number or 'private'")
    return (raw if raw.startswith("+") else f"+{raw}"), False


def asked_duration_of(params: Params) -> int | None:
    raw = params.get("max_duration", "").strip()
    if not raw:
        return None
    if not DIGITS.match(raw) or int(raw) < 1:
        raise bad("max_duration", f"{raw!r} is not a whole number of seconds from 1")
    return int(raw)


def max_duration_s(plane: ControlPlane, conference: Conference, asked: int | None = None) -> int:
    """The call's limit: what was asked, within the 2-hour rule and the conference's end."""
    limit = plane.config.dialout.max_call_s
    if asked is not None:
        limit = min(limit, asked)
    if conference.end_at is not None:
        left = (conference.end_at - plane.clock()).total_seconds()
        limit = min(limit, max(0, int(left)))
    return limit


async def create_call(plane: ControlPlane, tenant: Tenant, params: Params) -> dict[str, Any]:
    """The conference calls `from`; the guest joins the conference `to` after pressing #."""
    guest = guest_of(required(params, "from"))
    confirm = confirmation_of(params)
    display, private = display_of(params)
    asked = asked_duration_of(params)
    conference = await known_conference(plane, tenant, "to", required(params, "to"))
    if conference.state == ConferenceState.RESERVED:
        raise OrangeError(409, f"to: conference {conference.name!r} has not started")
    limit = max_duration_s(plane, conference, asked)
    try:
        (call,) = await calls.place(
            plane,
            tenant,
            conference.name,
            [guest],
            caller_id=display,
            private=private,
            confirm=confirm,
            tag="orange",
            max_duration_s=limit,
        )
    except Invalid as exc:
        raise bad("from", exc.problem or exc.message) from None
    except LimitExceeded as exc:
        raise OrangeError(429, f"from: {exc}") from None
    return {
        "call": {
            "id": call.ref,
            "from": guest,
            "to": conference.name,
            "status": "queued",
            "max_duration": limit,
        }
    }


Verb = Callable[[ControlPlane, Tenant, Params], Awaitable[dict[str, Any]]]
VERBS: dict[str, Verb] = {
    "createConference": create_conference,
    "addCaller": add_caller,
    "createCall": create_call,
}


@router.get("/{call}", operation_id="orange_rpc_get")
@router.post("/{call}", operation_id="orange_rpc_post")
async def rpc(call: str, request: Request) -> Response:
    """One route for every verb: `createConference.xml`, `addCaller.json`, ..."""
    verb, _, fmt = call.rpartition(".")
    if fmt not in ("xml", "json") or verb not in VERBS:
        shown = verb if fmt in ("xml", "json") else call
        return render("xml" if fmt != "json" else fmt, 404, f"unknown method {shown!r}", {})
    plane = plane_of(request)
    try:
        params = await read_params(request)
        tenant = await tenant_of(plane, params)
        payload = await VERBS[verb](plane, tenant, params)
    except OrangeError as exc:
        return render(fmt, exc.code, exc.message, {})
    except DomainError as exc:
        error = from_domain(exc)
        return render(fmt, error.code, error.message, {})
    except Exception:
        log.exception("orange.failed", verb=verb)
        return render(fmt, 500, "internal error", {})
    return render(fmt, 200, "OK", payload)
