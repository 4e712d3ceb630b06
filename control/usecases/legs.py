"""Call legs of an application: every call in its open conferences, ringing (a manual-answer
room leaves calls ringing for the API) or answered. A leg keeps one id from the first ring to
the release: the participant id it has (or will have) in the bridge."""

from __future__ import annotations

from dataclasses import dataclass

from bridge.control_port import ParticipantView, RingingCall
from control.plane import ControlPlane
from control.store.records import Tenant
from control.usecases.errors import Conflict, NotFound


@dataclass(frozen=True)
class Leg:
    """One call: `participant` is None while it rings."""

    id: str
    room: str
    caller: str
    call_id: str  # the SIP Call-ID
    started_at: float
    participant: ParticipantView | None

    @property
    def ringing(self) -> bool:
        return self.participant is None

    @property
    def held(self) -> bool:
        return self.participant is not None and (self.participant.held or self.participant.on_hold)


def ringing_leg(call: RingingCall) -> Leg:
    return Leg(call.id, call.room, call.caller, call.call_id, call.started_at, None)


def answered_leg(participant: ParticipantView) -> Leg:
    return Leg(
        participant.id,
        participant.room,
        participant.caller,
        participant.call_id,
        participant.started_at,
        participant,
    )


def rooms_of(plane: ControlPlane, tenant: Tenant) -> list[str]:
    return sorted(c.name for c in plane.conferences.values() if c.tenant_id == tenant.id)


def legs_of(plane: ControlPlane, tenant: Tenant) -> list[Leg]:
    """Every call leg in the tenant's open conferences, oldest first."""
    legs: list[Leg] = []
    for room in rooms_of(plane, tenant):
        legs += [ringing_leg(call) for call in plane.bridge.ringing_calls(room)]
        legs += [answered_leg(p) for p in plane.bridge.participants(room)]
    return sorted(legs, key=lambda leg: (leg.started_at, leg.id))


def find(plane: ControlPlane, tenant: Tenant, leg_id: str) -> Leg:
    for room in rooms_of(plane, tenant):
        participant = plane.bridge.find_participant(room, leg_id)
        if participant is not None:
            return answered_leg(participant)
        for call in plane.bridge.ringing_calls(room):
            if call.id == leg_id:
                return ringing_leg(call)
    raise NotFound(f"call {leg_id!r}")


def answer(plane: ControlPlane, leg: Leg) -> None:
    """Answer a ringing call; Conflict when it is not ringing (any more)."""
    if not leg.ringing or not plane.bridge.answer_ringing(leg.room, leg.id):
        raise Conflict(f"callId: call {leg.id!r} is not ringing")


def hold(plane: ControlPlane, leg: Leg, held: bool) -> None:
    """Put an answered call on hold (out of the mix, hold music) or take it off."""
    if leg.ringing:
        raise Conflict(f"callId: call {leg.id!r} is not answered yet")
    if not plane.bridge.set_option(leg.room, leg.id, "held", held):
        raise NotFound(f"call {leg.id!r}")


def release(plane: ControlPlane, leg: Leg) -> None:
    """Decline a ringing call (603) or hang up an answered one (BYE)."""
    if leg.ringing:
        plane.bridge.reject_ringing(leg.room, leg.id)
    else:
        plane.bridge.eject(leg.room, leg.id, reason="released")
