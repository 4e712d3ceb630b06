"""Where an incoming call goes, decided from its Request-URI, its caller, the room rules and
the control plane's gate (sans-I/O): straight into a room, through a code dialogue, or away."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sipmessage import Request

from bridge.conference.ivr import Admission, admission
from bridge.config import Config, RoomDefinition
from bridge.control_port import Announcement, Gate, ManualAnswer, Refusal, Reroute

ROOM_NAME = re.compile(r"[A-Za-z0-9._-]{1,32}")


def valid_room_name(name: str) -> bool:
    return ROOM_NAME.fullmatch(name) is not None


def caller_number(request: Request) -> str:
    """The caller's number: the P-Asserted-Identity user part when present, else From's."""
    asserted = request.headers.get("P-Asserted-Identity")
    if asserted:
        start, end = asserted.find("sip:"), asserted.find("@")
        if start == -1:
            start, end = asserted.find("tel:"), len(asserted.rstrip(">"))
        if start != -1 and end > start + 4:
            return asserted[start + 4 : end].split(";")[0].strip(">")
    return request.from_address.uri.user or ""


@dataclass(frozen=True)
class Plan:
    """Where an answered call goes: straight into `room`, through a code dialogue, or away."""

    admission: Admission
    room: str = ""
    code_for: Callable[[str], str | None] | None = None
    manual: bool = False  # ring until the control plane answers
    unanswered: ManualAnswer | None = None  # manual: what a call ringing too long gets
    announcement: Announcement | None = None  # ANNOUNCE: what to play before hanging up


def plan_incoming(
    name: str,
    caller: str,
    *,
    config: Config,
    definitions: Mapping[str, RoomDefinition],
    room_exists: Callable[[str], bool],
    room_full: Callable[[str], bool],
    gate: Gate | None,
) -> Plan | Refusal:
    """Where a call to room `name` from `caller` goes, or how to turn it away."""
    if not name or name in config.rooms.ivr_users:
        return Plan(Admission.ASK_CODE, code_for=lambda code: room_for_code(definitions, code))
    if not valid_room_name(name) and name not in definitions:
        return Refusal(404, "Invalid room name")  # managed rooms may have longer names
    decided = gate(name, caller) if gate is not None else None
    if isinstance(decided, Refusal):
        return decided
    if isinstance(decided, Announcement):
        return Plan(Admission.ANNOUNCE, announcement=decided)
    if isinstance(decided, Reroute):
        return Plan(Admission.JOIN, decided.room)
    manual = isinstance(decided, ManualAnswer)
    definition = definitions.get(name)
    if not room_exists(name) and not config.rooms.auto_create:
        return Refusal(404, "No such room")
    decision = admission(definition, caller)
    if decision is Admission.ASK_CODE:
        assert definition is not None
        code = definition.code
        return Plan(
            decision,
            name,
            code_for=lambda entered: name if entered == code else None,
            manual=manual,
        )
    if decision is Admission.JOIN and room_full(name):
        return Refusal(486, "Room full")
    unanswered = decided if isinstance(decided, ManualAnswer) else None
    return Plan(decision, name, manual=manual, unanswered=unanswered)


def room_for_code(definitions: Mapping[str, RoomDefinition], code: str) -> str | None:
    return next((r.name for r in definitions.values() if r.code and r.code == code), None)
