"""Conferences: create, look up, list, change, end. Every API (native or dialect) goes
through these, so a rule (a name is its tenant's, a start is not in the past, `caller` rooms
need callers, codes are generated) holds whichever document is spoken.

Names are SIP addresses (`sip:{name}@bridge`), so there is one name space: a name belongs to
the tenant whose conference first had it, open or ended, for as long as its records are kept;
only that tenant may reuse it (after the old one ended, with the new one's rules). Another
tenant gets the same `NameUnavailable` as for a room of the configuration file."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bridge.config import ACCESS_MODES, Config
from control.plane import ControlPlane
from control.schedule import ConferenceState
from control.store import errors as store_errors
from control.store.records import Conference, Tenant
from control.usecases.errors import Conflict, Invalid, NameTaken, NameUnavailable, NotFound

START_SLACK = timedelta(seconds=60)  # a start "now" computed on a slow client is not the past
CODED = ("room", "room+caller")  # access modes that need a room code
CHANGEABLE = (
    "access", "code", "max_participants", "divert_to", "leader", "locked", "end_on_leader_exit"
)


@dataclass(frozen=True)
class NewConference:
    """What a conference is created with (the native API's field names)."""

    name: str | None = None
    access: str = "none"
    code: str | None = None
    start_time: datetime | None = None
    duration_minutes: int | None = None
    max_participants: int | None = None
    divert_to: str | None = None
    leader: str | None = None
    callers: list[str] = field(default_factory=list)
    locked: bool = False
    manual_answer: bool = False
    end_on_leader_exit: bool = False  # the conference ends when its leader leaves


def is_config_room(config: Config, name: str) -> bool:
    """A room of the configuration file (`[[room]]` or `rooms.names`): never an API's."""
    return name in {r.name for r in config.room} or name in config.rooms.names


def check_name_free(plane: ControlPlane, tenant: Tenant, name: str) -> None:
    """NameUnavailable unless the name is new or already the tenant's."""
    owner = plane.owners.get(name)
    dialled = any(room.name == name and not room.managed for room in plane.bridge.live_rooms())
    if (
        (owner is not None and owner != tenant.id)
        or plane.dial_in.get(name, tenant.id) != tenant.id
        or is_config_room(plane.config, name)
        or name in plane.config.rooms.ivr_users
        or dialled
    ):
        raise NameUnavailable(name)


def new_code() -> str:
    return f"{secrets.randbelow(10**6):06d}"


def new_name() -> str:
    return f"c{secrets.randbelow(10**9):09d}"


def as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def check_start(plane: ControlPlane, start: datetime | None) -> datetime | None:
    """`start` in UTC; Invalid when it is in the past (on the plane's clock)."""
    if start is None:
        return None
    start = as_utc(start)
    if start < plane.clock() - START_SLACK:
        raise Invalid("start_time", "is in the past")
    return start


def check_access(access: str) -> None:
    if access not in ACCESS_MODES:
        raise Invalid("access", f"must be one of {', '.join(ACCESS_MODES)}, got {access!r}")


async def find(plane: ControlPlane, tenant: Tenant, name: str) -> Conference:
    """The tenant's conference of that name (the open one, else the latest ended one)."""
    conference = await plane.store.conferences.get_conference(tenant.id, name)
    if conference is None:
        raise NotFound(f"conference {name!r}")
    return conference


async def find_by_id(plane: ControlPlane, tenant: Tenant, conference_id: str) -> Conference:
    conference = await plane.store.conferences.get_conference_by_id(conference_id)
    if conference is None or conference.tenant_id != tenant.id:
        raise NotFound(f"conference {conference_id!r}")
    return conference


def require_open(conference: Conference) -> Conference:
    if conference.state == ConferenceState.COMPLETED:
        raise Conflict(f"conference {conference.name!r} is over")
    return conference


async def find_open(plane: ControlPlane, tenant: Tenant, name: str) -> Conference:
    """As `find`, but a COMPLETED conference is a Conflict."""
    return require_open(await find(plane, tenant, name))


async def create(plane: ControlPlane, tenant: Tenant, spec: NewConference) -> Conference:
    """Store the conference, then install it in the plane's cache and the bridge."""
    check_access(spec.access)
    start = check_start(plane, spec.start_time)
    if spec.access == "caller" and not spec.callers:
        raise Invalid("callers", "access 'caller' needs at least one caller")
    code = spec.code
    if spec.access in CODED and code is None:
        code = new_code()
    name = spec.name or new_name()
    check_name_free(plane, tenant, name)
    try:
        conference = await plane.store.conferences.create_conference(
            tenant.id,
            name=name,
            access=spec.access,
            code=code,
            start_at=start,
            duration_s=None if spec.duration_minutes is None else spec.duration_minutes * 60,
            max_participants=spec.max_participants,
            divert_to=spec.divert_to,
            leader=spec.leader,
            manual_answer=spec.manual_answer,
            end_on_leader_exit=spec.end_on_leader_exit,
            callers=spec.callers,
            state=str(plane.initial_state(start)),
            now=plane.clock(),
        )
    except store_errors.Conflict:
        mine = await plane.store.conferences.get_conference(tenant.id, name)
        if mine is None or mine.state == ConferenceState.COMPLETED:
            raise NameUnavailable(name) from None  # another tenant's create won the race
        raise NameTaken(name) from None
    if spec.locked:
        conference = await plane.store.conferences.update_conference(conference.id, locked=True)
    return await plane.save(conference)


async def page(
    plane: ControlPlane, tenant: Tenant, offset: int, limit: int
) -> tuple[list[Conference], int]:
    """One page of the tenant's conferences and how many there are."""
    return await plane.store.conferences.list_conferences(tenant.id, offset, limit)


async def every(plane: ControlPlane, tenant: Tenant) -> list[Conference]:
    """All the tenant's conferences, in creation order."""
    size, offset, found = 500, 0, []
    while True:
        items, total = await page(plane, tenant, offset, size)
        found += items
        offset += len(items)
        if not items or offset >= total:
            return found


async def modify(
    plane: ControlPlane, tenant: Tenant, name: str, given: Mapping[str, Any]
) -> Conference:
    """Change what `given` names (the native PATCH fields: `extend_minutes` adds to the
    duration, a new duration re-arms the warning, a coded access mode gets a code)."""
    conference = await find_open(plane, tenant, name)
    changes: dict[str, Any] = {k: given[k] for k in (*CHANGEABLE, "manual_answer") if k in given}
    if "access" in changes:
        check_access(changes["access"])
    if "start_time" in given:
        if conference.state != ConferenceState.RESERVED:
            raise Invalid("start_time", "can only change before the conference starts")
        changes["start_at"] = check_start(plane, given["start_time"])
        changes["state"] = str(plane.initial_state(changes["start_at"]))
    duration, extend = given.get("duration_minutes"), given.get("extend_minutes")
    if duration is not None and extend is not None:
        raise Invalid("extend_minutes", "give duration_minutes or extend_minutes, not both")
    if duration is not None:
        changes["duration_s"] = duration * 60
    if extend is not None:
        if conference.duration_s is None:
            raise Invalid("extend_minutes", "the conference has no duration to extend")
        changes["duration_s"] = conference.duration_s + extend * 60
    if "duration_s" in changes:
        changes["warned"] = False
    access = changes.get("access", conference.access)
    if access in CODED and not changes.get("code", conference.code):
        changes["code"] = new_code()
    if access == "caller" and not conference.callers:
        raise Invalid("access", "access 'caller' needs at least one caller")
    return await plane.save(conference, **changes)


async def set_duration(plane: ControlPlane, conference: Conference, minutes: int) -> Conference:
    """A new booked length (the end-of-conference warning is re-armed)."""
    require_open(conference)
    return await plane.save(conference, duration_s=minutes * 60, warned=False)


async def end(
    plane: ControlPlane, conference: Conference, reason: str = "ended by API"
) -> Conference:
    """Hang everyone up and mark it COMPLETED; ending an ended conference changes nothing."""
    if conference.state == ConferenceState.COMPLETED:
        return conference
    return await plane.end(conference, reason)
