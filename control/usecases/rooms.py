"""Live rooms: the operator's view of every room the bridge has now, whoever made it (a
tenant's conference, the configuration file, or a caller dialling a free name), and control of
anyone in it (admin token); and a tenant's view of the live rooms that are its own: its
conferences' and those made by dialling one of its `[[application]] dial_in` names. Another
tenant's room is NotFound, exactly as a missing one."""

from __future__ import annotations

from dataclasses import dataclass

from bridge.control_port import ParticipantView
from control.plane import ControlPlane
from control.store.records import Tenant
from control.usecases.errors import NotFound


@dataclass(frozen=True)
class LiveRoom:
    name: str
    participants: int
    ringing: int
    origin: str  # "conference" (a tenant's), "config" ([[room]] or rooms.names), "dialled"
    tenant_id: str | None  # the conference's tenant, or the one whose dial-in name it is
    conference_id: str | None


def live(plane: ControlPlane) -> list[LiveRoom]:
    """Every room the bridge has, by name."""
    found = []
    for room in plane.bridge.live_rooms():
        conference = plane.conferences.get(room.name)
        if conference is not None:
            origin = "conference"
        elif room.managed or room.name in plane.config.rooms.names:
            origin = "config"
        else:
            origin = "dialled"
        found.append(
            LiveRoom(
                room.name,
                room.participants,
                room.ringing,
                origin,
                conference.tenant_id if conference else plane.dial_in.get(room.name),
                conference.id if conference else None,
            )
        )
    return sorted(found, key=lambda r: r.name)


def find(plane: ControlPlane, name: str) -> LiveRoom:
    room = next((r for r in live(plane) if r.name == name), None)
    if room is None:
        raise NotFound(f"room {name!r}")
    return room


def members(plane: ControlPlane, name: str) -> list[ParticipantView]:
    find(plane, name)
    return plane.bridge.participants(name)


def of_tenant(plane: ControlPlane, tenant: Tenant) -> list[LiveRoom]:
    """The tenant's live rooms: its conferences' and its dial-in names' (made by dialling)."""
    return [room for room in live(plane) if room.tenant_id == tenant.id]


def find_own(plane: ControlPlane, tenant: Tenant, name: str) -> LiveRoom:
    room = next((r for r in of_tenant(plane, tenant) if r.name == name), None)
    if room is None:
        raise NotFound(f"room {name!r}")
    return room
