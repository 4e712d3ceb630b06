"""The use cases against a real SQLite store and an in-memory bridge (`FakeBridge`, a small
`ConferenceControl`): the domain errors each bad request gets, whatever API asked."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge.config import ApplicationDefinition, Config, RoomDefinition
from bridge.control_port import (
    PARTICIPANT_OPTIONS,
    BridgeStats,
    DialRequest,
    Gate,
    ParticipantView,
    RingingCall,
    RoomView,
)
from bridge.events import EventBus
from control.plane import ControlPlane
from control.store import Store, open_store
from control.store.records import Tenant
from control.usecases import callers, calls, conferences, legs, participants, rooms
from control.usecases.auth import authenticate
from control.usecases.conferences import NewConference
from control.usecases.errors import (
    Conflict,
    Expired,
    Invalid,
    LimitExceeded,
    NameTaken,
    NameUnavailable,
    NotFound,
    Unauthorized,
)


def person(room: str, participant_id: str, caller: str = "+15550100") -> ParticipantView:
    return ParticipantView(
        id=participant_id, room=room, caller=caller, display_name="", call_id=f"c-{participant_id}",
        started_at=1.0, joined_at=2.0, muted=False, deaf=False, dtmf_enabled=True, held=False,
        on_hold=False, talking=False, volume_db=0, codec="PCMU", packets_in=0, packets_out=0,
        packets_lost=0, jitter_ms=0.0,
    )  # fmt: skip


class FakeBridge:
    """An in-memory bridge: rooms defined, participants and ringing calls put in by the test,
    commands recorded; a participant not there makes a command return False."""

    def __init__(self) -> None:
        self.events = EventBus()
        self.gate: Gate | None = None
        self.rooms: dict[str, RoomDefinition] = {}
        self.mixing: dict[str, bool] = {}
        self.people: dict[str, list[ParticipantView]] = {}
        self.ringing: dict[str, list[RingingCall]] = {}
        self.dialled: list[DialRequest] = []
        self.played: list[tuple[str, str]] = []

    def set_gate(self, gate: Gate | None) -> None:
        self.gate = gate

    def sip_uri(self, user: str | None = None) -> str:
        return f"sip:{user}@127.0.0.1:5060" if user else "sip:127.0.0.1:5060"

    def define_room(self, definition: RoomDefinition) -> None:
        self.rooms[definition.name] = definition

    def forget_room(self, room: str, reason: str) -> None:
        self.rooms.pop(room, None)
        self.people.pop(room, None)

    def set_mixing(self, room: str, mixing: bool) -> None:
        self.mixing[room] = mixing

    def play_to_room(self, room: str, prompt: str) -> None:
        self.played.append((room, prompt))

    def live_rooms(self) -> list[RoomView]:
        names = {*self.rooms, *(room for room, people in self.people.items() if people)}
        return [
            RoomView(name, len(self.people.get(name, [])), len(self.ringing.get(name, [])),
                     name in self.rooms)
            for name in sorted(names)
        ]  # fmt: skip

    def participants(self, room: str) -> list[ParticipantView]:
        return list(self.people.get(room, []))

    def find_participant(self, room: str, participant_id: str) -> ParticipantView | None:
        return next((p for p in self.people.get(room, []) if p.id == participant_id), None)

    def ringing_calls(self, room: str) -> list[RingingCall]:
        return list(self.ringing.get(room, []))

    def _change(self, room: str, participant_id: str, **changes: Any) -> bool:
        people = self.people.get(room, [])
        for index, found in enumerate(people):
            if found.id == participant_id:
                people[index] = dataclasses.replace(found, **changes)
                return True
        return False

    def set_muted(self, room: str, participant_id: str, muted: bool, by: str = "api") -> bool:
        return self._change(room, participant_id, muted=muted)

    def set_option(self, room: str, participant_id: str, option: str, value: object) -> bool:
        if option not in PARTICIPANT_OPTIONS:
            raise ValueError(option)
        return self._change(room, participant_id, **{option: value})

    def eject(self, room: str, participant_id: str, reason: str = "ejected") -> bool:
        before = self.people.get(room, [])
        self.people[room] = [p for p in before if p.id != participant_id]
        return len(before) != len(self.people[room])

    def answer_ringing(self, room: str, call_id: str) -> bool:
        calls = self.ringing.get(room, [])
        self.ringing[room] = [c for c in calls if c.id != call_id]
        return len(calls) != len(self.ringing[room])

    def reject_ringing(self, room: str, call_id: str, status: int = 603) -> bool:
        return self.answer_ringing(room, call_id)

    def dial(self, request: DialRequest) -> None:
        self.dialled.append(request)

    def stats(self) -> BridgeStats:
        people = sum(len(p) for p in self.people.values())
        return BridgeStats(0, len(self.people), people, 0, 0, 0, (), 0.0)


# --- fixtures ---------------------------------------------------------------------------------

START = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)


class Clock:
    """The plane's injected clock, moved by the test."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclasses.dataclass
class World:
    plane: ControlPlane
    bridge: FakeBridge
    store: Store
    clock: Clock
    acme: Tenant
    other: Tenant


def config() -> Config:
    base = Config()
    return dataclasses.replace(
        base,
        rooms=dataclasses.replace(base.rooms, names=("lobby",)),
        room=(RoomDefinition("board", access="room", code="1234"),),
        dialout=dataclasses.replace(base.dialout, max_concurrent=2),
    )


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    store = await open_store(f"sqlite:///{tmp_path / 'control.db'}")
    clock = Clock()
    bridge = FakeBridge()
    plane = ControlPlane(config(), bridge, store, clock=clock)
    acme = await store.tenants.create_tenant("acme")
    other = await store.tenants.create_tenant("other")
    try:
        yield World(plane, bridge, store, clock, acme, other)
    finally:
        await plane.dialouts.stop()
        await store.close()


# --- conferences -------------------------------------------------------------------------------


async def test_create_installs_the_room_and_generates_a_code(world: World) -> None:
    made = await conferences.create(
        world.plane, world.acme, NewConference(name="standup", access="room")
    )
    assert made.code is not None and len(made.code) == 6
    assert world.bridge.rooms["standup"].code == made.code
    assert world.plane.conferences["standup"] == made
    assert await conferences.find(world.plane, world.acme, "standup") == made


async def test_duplicate_and_unavailable_names_conflict(world: World) -> None:
    await conferences.create(world.plane, world.acme, NewConference(name="standup"))
    with pytest.raises(NameTaken) as own:
        await conferences.create(world.plane, world.acme, NewConference(name="standup"))
    assert not isinstance(own.value, NameUnavailable)
    world.bridge.people["dialled"] = [person("dialled", "p1")]  # a room made by dialling
    messages = set()
    for name in ("standup", "board", "lobby", "conference", "dialled"):
        with pytest.raises(NameUnavailable) as refused:
            await conferences.create(world.plane, world.other, NewConference(name=name))
        messages.add(refused.value.message.replace(name, "X"))
    assert messages == {"name: 'X' is not available, choose another"}  # never says whose


async def test_a_name_stays_its_tenants_after_the_conference_ends(world: World) -> None:
    made = await conferences.create(
        world.plane, world.acme, NewConference(name="weekly", access="room", code="4321")
    )
    await conferences.end(world.plane, made)
    with pytest.raises(NameUnavailable):
        await conferences.create(world.plane, world.other, NewConference(name="weekly"))
    again = await conferences.create(
        world.plane, world.acme, NewConference(name="weekly", access="caller", callers=["+1"])
    )
    assert again.id != made.id and world.bridge.rooms["weekly"].access == "caller"
    # the owners survive a restart: a new plane reads them from the database
    fresh = ControlPlane(config(), FakeBridge(), world.store, clock=world.clock)
    fresh.owners = await world.store.conferences.name_owners()
    assert fresh.owners["weekly"] == world.acme.id


async def test_the_gate_refuses_an_ended_conference(world: World) -> None:
    """Dialling an ended conference's name never reaches an open room made by dialling."""
    made = await conferences.create(world.plane, world.acme, NewConference(name="retro"))
    assert world.plane.gate("retro", "+1") is None
    await conferences.end(world.plane, made)
    refusal = world.plane.gate("retro", "+1")
    assert refusal is not None and getattr(refusal, "status", None) == 404
    assert world.plane.gate("never-made", "+1") is None  # rooms.auto_create decides


async def test_the_operator_sees_every_live_room(world: World) -> None:
    await conferences.create(world.plane, world.acme, NewConference(name="standup"))
    world.bridge.people["standup"] = [person("standup", "p1")]
    world.bridge.people["walkin"] = [person("walkin", "p2"), person("walkin", "p3")]
    found = {r.name: r for r in rooms.live(world.plane)}
    assert found["standup"].origin == "conference"
    assert found["standup"].tenant_id == world.acme.id
    assert (found["walkin"].origin, found["walkin"].participants) == ("dialled", 2)
    assert [p.id for p in rooms.members(world.plane, "walkin")] == ["p2", "p3"]
    participants.update_in(world.plane, "walkin", "p2", {"muted": True})
    assert world.bridge.find_participant("walkin", "p2").muted  # type: ignore[union-attr]
    participants.eject_from(world.plane, "walkin", "p3")
    with pytest.raises(NotFound):
        rooms.members(world.plane, "nowhere")
    with pytest.raises(NotFound):
        participants.eject_from(world.plane, "walkin", "p3")


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (NewConference(access="secret"), "access"),
        (NewConference(access="caller"), "callers"),
        (NewConference(start_time=START - timedelta(hours=1)), "start_time"),
    ],
)
async def test_bad_conferences_name_the_field(
    world: World, spec: NewConference, field: str
) -> None:
    with pytest.raises(Invalid) as refused:
        await conferences.create(world.plane, world.acme, spec)
    assert refused.value.field == field
    assert world.bridge.rooms == {}


async def test_another_tenants_conference_is_unknown(world: World) -> None:
    await conferences.create(world.plane, world.acme, NewConference(name="standup"))
    with pytest.raises(NotFound):
        await conferences.find(world.plane, world.other, "standup")
    with pytest.raises(NotFound):
        await conferences.find(world.plane, world.acme, "nothing")


async def test_modify_checks_and_an_ended_conference_conflicts(world: World) -> None:
    await conferences.create(world.plane, world.acme, NewConference(name="standup"))
    with pytest.raises(Invalid) as refused:
        await conferences.modify(world.plane, world.acme, "standup", {"extend_minutes": 5})
    assert refused.value.field == "extend_minutes"
    with pytest.raises(Invalid):
        await conferences.modify(world.plane, world.acme, "standup", {"access": "everyone"})
    changed = await conferences.modify(
        world.plane, world.acme, "standup", {"access": "room", "duration_minutes": 30}
    )
    assert changed.code and changed.duration_s == 1800
    ended = await conferences.end(world.plane, changed)
    assert ended.state == "COMPLETED" and "standup" not in world.bridge.rooms
    with pytest.raises(Conflict):
        await conferences.modify(world.plane, world.acme, "standup", {"locked": True})


async def test_a_reservation_starts_reserved_on_the_plane_clock(world: World) -> None:
    later = NewConference(name="later", start_time=START + timedelta(minutes=10))
    made = await conferences.create(world.plane, world.acme, later)
    assert made.state == "RESERVED"
    assert world.bridge.mixing["later"] is False


# --- tokens ------------------------------------------------------------------------------------


async def test_unknown_and_expired_tokens(world: World) -> None:
    with pytest.raises(Unauthorized) as refused:
        await authenticate(world.plane, "cb_nope")
    assert not isinstance(refused.value, Expired)
    token = await world.store.tenants.create_token(
        world.acme.id, now=world.clock(), expires_at=world.clock() + timedelta(seconds=60)
    )
    assert (await authenticate(world.plane, token)).id == world.acme.id
    world.clock.advance(seconds=61)  # only the injected clock moves
    with pytest.raises(Expired):
        await authenticate(world.plane, token)


# --- caller lists and participants -------------------------------------------------------------


async def test_caller_list_goes_to_the_bridge(world: World) -> None:
    made = await conferences.create(
        world.plane, world.acme, NewConference(name="vip", access="caller", callers=["+1555"])
    )
    made = await callers.add(world.plane, made, "+1666")
    assert world.bridge.rooms["vip"].callers == ("+1555", "+1666")
    with pytest.raises(NotFound):
        await callers.remove(world.plane, made, "+1777")
    made = await callers.remove(world.plane, made, "+1555")
    assert callers.listed(made) == ["+1666"]


async def test_participants_through_the_port(world: World) -> None:
    made = await conferences.create(world.plane, world.acme, NewConference(name="standup"))
    world.bridge.people["standup"] = [person("standup", "p1"), person("standup", "p2")]
    assert [p.id for p in participants.in_conference(world.plane, made)] == ["p1", "p2"]
    after = participants.update(world.plane, made, "p1", {"muted": True, "on_hold": True})
    assert after.muted and after.held
    with pytest.raises(Invalid):
        participants.update(world.plane, made, "p1", {"loud": True})
    participants.eject(world.plane, made, "p2")
    for gone in (lambda: participants.eject(world.plane, made, "p2"),
                 lambda: participants.update(world.plane, made, "p2", {"muted": True}),
                 lambda: participants.find(world.plane, made, "p2")):  # fmt: skip
        with pytest.raises(NotFound):
            gone()


async def test_legs_ringing_and_answered(world: World) -> None:
    await conferences.create(
        world.plane, world.acme, NewConference(name="desk", manual_answer=True)
    )
    world.bridge.ringing["desk"] = [RingingCall("r1", "desk", "+1555", "sip-1", 5.0)]
    world.bridge.people["desk"] = [person("desk", "p1")]
    found = legs.legs_of(world.plane, world.acme)
    assert [(leg.id, leg.ringing) for leg in found] == [("p1", False), ("r1", True)]
    assert legs.legs_of(world.plane, world.other) == []
    with pytest.raises(Conflict):
        legs.answer(world.plane, legs.find(world.plane, world.acme, "p1"))
    with pytest.raises(Conflict):
        legs.hold(world.plane, legs.find(world.plane, world.acme, "r1"), True)
    legs.answer(world.plane, legs.find(world.plane, world.acme, "r1"))
    with pytest.raises(NotFound):
        legs.find(world.plane, world.acme, "r1")


# --- calls out ---------------------------------------------------------------------------------


async def test_calls_out_are_refused_before_anything_is_dialled(world: World) -> None:
    later = NewConference(name="later", start_time=START + timedelta(minutes=10))
    await conferences.create(world.plane, world.acme, later)
    with pytest.raises(Conflict):
        await calls.place(world.plane, world.acme, "later", ["sip:a@127.0.0.1"])
    await conferences.create(world.plane, world.acme, NewConference(name="now"))
    with pytest.raises(NotFound):
        await calls.place(world.plane, world.other, "now", ["sip:a@127.0.0.1"])
    for dests in ([], ["+12ab"], ["mailto:a@example.org"], ["+15551234567"]):  # no trunk
        with pytest.raises(Invalid) as refused:
            await calls.place(world.plane, world.acme, "now", dests)
        assert refused.value.field == "dest"
    many = ["sip:a@127.0.0.1", "sip:b@127.0.0.1", "sip:c@127.0.0.1"]
    with pytest.raises(LimitExceeded):
        await calls.place(world.plane, world.acme, "now", many)
    assert world.plane.dialouts.records == {}


async def test_a_caller_id_must_be_the_applications_own(world: World) -> None:
    await conferences.create(world.plane, world.acme, NewConference(name="now"))
    world.plane.config = dataclasses.replace(
        world.plane.config,
        application=(ApplicationDefinition("acme", token="t" * 16, caller_ids=("+4930123",)),),
    )
    for caller_id in ("+4930999", "+4930123X"):
        with pytest.raises(Invalid) as refused:
            await calls.place(
                world.plane, world.acme, "now", ["sip:a@127.0.0.1"], caller_id=caller_id
            )
        assert refused.value.field == "caller_id"
    with pytest.raises(Invalid):  # another application does not own acme's number
        await conferences.create(world.plane, world.other, NewConference(name="theirs"))
        await calls.place(
            world.plane, world.other, "theirs", ["sip:a@127.0.0.1"], caller_id="+4930123"
        )
    assert world.plane.dialouts.records == {}
    (own,) = await calls.place(
        world.plane, world.acme, "now", ["sip:a@127.0.0.1"], caller_id="+4930123"
    )
    (default,) = await calls.place(world.plane, world.acme, "now", ["sip:b@127.0.0.1"])
    assert (own.caller_id, default.caller_id) == ("+4930123", "now")
    world.plane.config = dataclasses.replace(
        world.plane.config,
        dialout=dataclasses.replace(world.plane.config.dialout, caller_id_policy="any"),
    )
    calls.check_caller_id(world.plane, world.other, "+1999")  # "any": the trunk checks


async def test_a_call_out_is_the_planes_record(world: World) -> None:
    await conferences.create(world.plane, world.acme, NewConference(name="now"))
    (call,) = await calls.place(world.plane, world.acme, "now", ["sip:a@127.0.0.1"], tag="t1")
    assert call.caller_id == "now" and call.tenant_id == world.acme.id and call.tag == "t1"
    assert calls.find(world.plane, world.acme, call.ref) is call
    with pytest.raises(NotFound):
        calls.find(world.plane, world.other, call.ref)
    assert await calls.into(world.plane, world.acme, "now") == [call]
