"""Participants of a conference, through the bridge's control port: snapshots to read,
commands by (room, participant id). A participant who hung up meanwhile is NotFound."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sipmessage import URI

from bridge.control_port import PARTICIPANT_OPTIONS, ParticipantView
from control.plane import ControlPlane
from control.schedule import ConferenceState
from control.store.records import Conference
from control.usecases.errors import Invalid, NotFound

ROOM_NAME = re.compile(r"[A-Za-z0-9._-]{1,32}")
SETTABLE = ("muted", "on_hold", *PARTICIPANT_OPTIONS)
ALIASES = {"on_hold": "held"}  # the API's "on_hold" is the bridge's "held" (hold music)


def in_conference(plane: ControlPlane, conference: Conference) -> list[ParticipantView]:
    """Who is in; nobody once the conference is over."""
    if conference.state == ConferenceState.COMPLETED:
        return []
    return plane.bridge.participants(conference.name)


def count(plane: ControlPlane, conference: Conference) -> int:
    return len(in_conference(plane, conference))


def find(plane: ControlPlane, conference: Conference, participant_id: str) -> ParticipantView:
    return find_in(plane, conference.name, participant_id)


def find_in(plane: ControlPlane, room: str, participant_id: str) -> ParticipantView:
    found = plane.bridge.find_participant(room, participant_id)
    if found is None:
        raise NotFound(f"participant {participant_id!r}")
    return found


def update(
    plane: ControlPlane, conference: Conference, participant_id: str, options: Mapping[str, Any]
) -> ParticipantView:
    """Set `muted` (by the API) and any of `on_hold`, `deaf`, `dtmf_enabled`, `volume_db`;
    the participant as it is afterwards."""
    return update_in(plane, conference.name, participant_id, options)


def update_in(
    plane: ControlPlane, room: str, participant_id: str, options: Mapping[str, Any]
) -> ParticipantView:
    """As `update`, for any room by name (the operator's rooms, dialled ones too)."""
    find_in(plane, room, participant_id)
    unknown = sorted(set(options) - set(SETTABLE))
    if unknown:
        raise Invalid(unknown[0], "unknown participant option")
    first = [o for o in ("muted", "on_hold") if o in options]  # the order events come out in
    for option in [*first, *(o for o in options if o not in first)]:
        value = options[option]
        if option == "muted":
            done = plane.bridge.set_muted(room, participant_id, bool(value), by="api")
        else:
            done = plane.bridge.set_option(room, participant_id, ALIASES.get(option, option), value)
        if not done:
            raise NotFound(f"participant {participant_id!r}")
    return find_in(plane, room, participant_id)


def eject(
    plane: ControlPlane, conference: Conference, participant_id: str, reason: str = "ejected"
) -> None:
    """Hang the participant up (BYE)."""
    eject_from(plane, conference.name, participant_id, reason)


def eject_from(
    plane: ControlPlane, room: str, participant_id: str, reason: str = "ejected"
) -> None:
    if not plane.bridge.eject(room, participant_id, reason):
        raise NotFound(f"participant {participant_id!r}")


def transfer(plane: ControlPlane, conference: Conference, participant_id: str, target: str) -> None:
    """Blind transfer (REFER) to `target`: a SIP URI (sip:/sips:) or a room name of this
    bridge. The participant leaves once its phone is connected there."""
    if target.lower().startswith(("sip:", "sips:")):
        try:
            uri = URI.parse(target)
        except ValueError:
            raise Invalid("target", "not a valid SIP URI") from None
        if not uri.host:
            raise Invalid("target", "a SIP URI needs a host")
    elif not ROOM_NAME.fullmatch(target):
        raise Invalid("target", "a SIP URI (sip:...) or a room name")
    if not plane.bridge.transfer(conference.name, participant_id, target):
        raise NotFound(f"participant {participant_id!r}")
