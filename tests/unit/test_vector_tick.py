"""The vectorised tick against the reference: the same packets out, bit for bit.

Two worlds get the same random rooms of random callers (talk, noise, exact silence, key tones in
band, losses, short payloads, PCMU and PCMA) and the same changes while they run: mute, deaf,
hold both ways, listening volume, prompts, room mixing on and off, members joining, leaving and
moving between rooms. One world ticks each room by `Room.tick`, the other all rooms at once by
`VectorTick`; every packet each member is sent, every digit and every talking change must be
the same. In the vectorised world most members' jitter buffers live in `JitterColumns`, as on a
shared RTP port: their audio packets are pushed a tick's batch at a time (now and then two of a
member's in one batch) and their frames popped in one call; a third world ticks such members
room by room (`Room.tick` through the column views).
"""

from __future__ import annotations

import numpy as np
import pytest

from bridge.media.g711 import CODECS
from bridge.mixing import columnar
from bridge.mixing.backend import (
    AddParticipant,
    Controls,
    DigitPressed,
    Identity,
    NegotiatedMedia,
    PlayPrompt,
    RemoveParticipant,
    TalkingChanged,
    UpdateControls,
)
from bridge.mixing.engine import MediaEngine, new_participant
from bridge.mixing.participant import Participant
from bridge.mixing.room import Room
from bridge.mixing.vector.tick import VectorTick
from bridge.rtp.jitter_columns import JitterColumns
from tests.unit.test_room_shared_mix import Caller, Wire, make_member

KINDS_P = [0.1, 0.1, 0.1, 0.3, 0.1, 0.1, 0.1, 0.1]


class World:
    """Rooms by name, their members and the wire each member's packets go out on."""

    def __init__(self, vectorised: bool, columns: bool = False, compiled: bool = True) -> None:
        self.vector = VectorTick(compiled=compiled) if vectorised else None
        self.columns = JitterColumns(capacity=2, compiled=compiled) if columns else None
        self.rooms: dict[str, Room] = {}
        self.wires: dict[str, Wire] = {}
        self.digits: list[tuple[str, str, str, str]] = []
        self.talking: list[tuple[str, str, bool]] = []

    def join(self, room: str, member: Participant, wire: Wire, in_columns: bool = False) -> None:
        if in_columns and self.columns is not None and columnar.column_of(member) is None:
            columnar.attach(self.columns, member)
        if room not in self.rooms:
            self.rooms[room] = Room(room, 1000)
        self.rooms[room].add(member)
        self.wires[member.id] = wire

    def flip_columns(self, member_id: str) -> None:
        """The member's jitter buffer into the columns or out, with no command (as the shared
        port's own bookkeeping may): the tick must see it by the columns' slots alone."""
        if self.columns is None:
            return
        _, member = self.find(member_id)
        if columnar.column_of(member) is None:
            columnar.attach(self.columns, member)
        else:
            columnar.detach(member)

    def find(self, member_id: str) -> tuple[Room, Participant]:
        for room in self.rooms.values():
            member = room.find(member_id)
            if member is not None:
                return room, member
        raise KeyError(member_id)

    def leave(self, member_id: str) -> Participant:
        room, member = self.find(member_id)
        room.remove(member)
        if not room.participants:
            del self.rooms[room.name]
        return member

    def deliver(self, packets: list[tuple[str, bytes]], now: float) -> None:
        """The tick's packets, in order: a columnar member's in one batch, as the shared port
        hands them over (`JitterColumns.deliver`: its plain audio pushed, the rest back), the
        rest one by one."""
        batch: list[tuple[Participant, int, bytes]] = []
        for member_id, data in packets:
            _, member = self.find(member_id)
            view = columnar.column_of(member)
            if view is not None:
                batch.append((member, view.slot, data))
            else:
                member.receive_rtp(data, member.remote, now)
        if not batch or self.columns is None:
            return
        rows = np.zeros((len(batch), 12 + 200), np.uint8)
        for i, (_, _, data) in enumerate(batch):
            rows[i, : len(data)] = np.frombuffer(data, np.uint8)
        others = self.columns.deliver(
            rows, np.array([len(data) for _, _, data in batch]), np.arange(len(batch)),
            np.array([member.codec.payload_type for member, _, _ in batch], np.int16),
            np.array([slot for _, slot, _ in batch]), np.full(len(batch), now),
        )  # fmt: skip
        for i in np.flatnonzero(others).tolist():
            member, _, data = batch[i]
            member.receive_rtp(data, member.remote, now)

    def tick(self) -> None:
        rooms = list(self.rooms.values())
        if self.vector is not None:
            found = self.vector.tick(rooms)
        else:
            found = [room.tick() for room in rooms]
        for room, digits in zip(rooms, found, strict=True):
            self.digits.extend((room.name, p.id, d, m) for p, d, m in digits)
            self.talking.extend((room.name, p.id, p.voice.talking) for p in room.talk_changes)
            room.talk_changes.clear()


def change(rng: np.random.Generator, worlds: list[World], member_id: str) -> None:
    """One random change of a member's controls, or of its room, made in both worlds."""
    kind = int(rng.integers(8))
    volume = int(rng.choice([-6, 0, 0, 3]))
    prompt = rng.integers(-20000, 20000, int(rng.integers(100, 900))).astype(np.int16)
    replace = bool(rng.random() < 0.5)
    for world in worlds:
        room, member = world.find(member_id)
        if kind == 0:
            member.muted = not member.muted
        elif kind == 1:
            member.deaf = not member.deaf
        elif kind == 2:
            member.on_hold = not member.on_hold
        elif kind == 3:
            member.held = not member.held
        elif kind == 4:
            member.volume_db = volume
        elif kind == 5:
            member.prompts.play(prompt, replace_room_audio=replace)
        elif kind == 6:
            room.mixing = not room.mixing
        else:
            member.prompts.clear()
        if world.vector is not None:  # as the engine does on every command: the member's, or
            world.vector.changed(None if kind == 6 else member)  # a room's (every room)


@pytest.mark.parametrize("seed", range(30))
def test_the_vectorised_tick_sends_what_the_reference_sends(seed: int) -> None:
    rng = np.random.default_rng(1000 + seed)
    worlds = [
        World(vectorised=False),
        World(vectorised=True, columns=True),
        World(vectorised=True, columns=True, compiled=False),
        World(vectorised=False, columns=True),
    ]
    callers: dict[str, Caller] = {}
    mixed_codecs = seed % 3 != 1
    next_index = 0

    def join(room: str) -> None:
        nonlocal next_index
        index = next_index
        next_index += 1
        codec = str(rng.choice(["PCMU", "PCMA"])) if mixed_codecs else "PCMU"
        te_pt = None if rng.random() < 0.6 else 101
        kind = str(rng.choice(Caller.KINDS, p=KINDS_P))
        in_columns = bool(rng.random() < 0.7)
        for world in worlds:
            wire = Wire()
            world.join(room, make_member(index, codec, te_pt, wire), wire, in_columns)
        callers[f"p{index}"] = Caller(index, codec, kind, rng)

    room_count = int(rng.integers(1, 9))
    for r in range(room_count):
        for _ in range(int(rng.integers(1, 14)) if r or seed % 5 else 45):
            join(f"room{r}")
    held: list[tuple[str, bytes]] = []  # delivered with the next tick's
    for tick in range(90):
        packets, held = held, []
        for member_id, caller in callers.items():
            data = caller.packet()
            if data is None:
                continue
            (held if rng.random() < 0.05 else packets).append((member_id, data))
        packets = [(member_id, data) for member_id, data in packets if member_id in callers]
        for world in worlds:
            world.deliver(packets, tick * 0.02)
        if tick > 4 and rng.random() < 0.4:
            change(rng, worlds, str(rng.choice(sorted(callers))))
        if tick > 4 and rng.random() < 0.15:  # someone joins, in a room or a new one
            join(f"room{int(rng.integers(room_count + 1))}")
        if tick > 4 and rng.random() < 0.1 and len(callers) > 1:  # someone leaves
            gone = str(rng.choice(sorted(callers)))
            del callers[gone]
            for world in worlds:
                columnar.detach(world.leave(gone))
        if tick > 4 and rng.random() < 0.1:  # someone moves to another room
            moving = str(rng.choice(sorted(callers)))
            target = f"room{int(rng.integers(room_count + 1))}"
            for world in worlds:
                member = world.leave(moving)
                world.join(target, member, world.wires[moving], in_columns=True)
        if tick > 4 and rng.random() < 0.1:
            flipping = str(rng.choice(sorted(callers)))
            for world in worlds:
                world.flip_columns(flipping)
        for world in worlds:
            world.tick()
    reference = worlds[0]
    for vectorised in worlds[1:]:
        assert vectorised.digits == reference.digits
        assert vectorised.talking == reference.talking
        assert reference.wires.keys() == vectorised.wires.keys()
        for member_id, wire in reference.wires.items():
            assert vectorised.wires[member_id].packets == wire.packets, member_id
    assert sum(len(w.packets) for w in reference.wires.values()) > 0


def test_the_test_sees_digits_talking_and_prompts() -> None:
    """The random worlds above exercise what they claim: keys in band, talking, prompts."""
    rng = np.random.default_rng(7)
    world = World(vectorised=True)
    wires = [Wire() for _ in range(3)]
    members = [make_member(i, "PCMU", None, wires[i]) for i in range(3)]
    for member, wire in zip(members, wires, strict=True):
        world.join("r", member, wire)
    callers = [Caller(i, "PCMU", kind, rng) for i, kind in enumerate(["dtmf", "loud", "zeros"])]
    members[2].prompts.play(np.full(800, 3000, np.int16), replace_room_audio=True)
    for tick in range(120):
        for member, caller in zip(members, callers, strict=True):
            data = caller.sender.packet(caller.codec.encode(caller.frame()))
            member.receive_rtp(data, member.remote, tick * 0.02)
        world.tick()
    assert [d for _, who, d, how in world.digits if who == "p0" and how == "inband"][:3] == [
        "1",
        "5",
        "#",
    ]
    assert ("r", "p1", True) in world.talking
    assert not members[2].prompts.busy
    assert all(len(wire.packets) == 120 for wire in wires)


def _add(engine: MediaEngine, leg: str, room: str, codec: str, wire: Wire) -> None:
    command = AddParticipant(
        leg=leg,
        room=room,
        identity=Identity(
            participant_id=leg, caller=leg, display_name="", signalling_host="127.0.0.1"
        ),
        media=NegotiatedMedia(codec, ("127.0.0.1", 4000), telephone_event_pt=None, on_hold=False),
        controls=Controls(),
        now=0.0,
    )
    engine.add(new_participant(command, wire.send, 40, 60), room)


def test_the_engine_reports_the_same_with_either_tick() -> None:
    """Through `MediaEngine`: the same reports (digits, talking, prompts played) in the same
    order, whether its rooms tick one by one or all at once."""
    rng = np.random.default_rng(3)
    engines = [MediaEngine(vector=None), MediaEngine()]
    wires: list[dict[str, Wire]] = [{}, {}]
    callers: dict[str, Caller] = {}
    for i in range(12):
        leg, room = f"leg{i}", f"room{i % 3}"
        kind = ["dtmf", "loud", "talk", "zeros"][i % 4]
        callers[leg] = Caller(i, "PCMU" if i % 2 else "PCMA", kind, rng)
        for engine, by_leg in zip(engines, wires, strict=True):
            by_leg[leg] = Wire()
            _add(engine, leg, room, callers[leg].codec.name, by_leg[leg])
    reports: list[list[object]] = [[], []]
    for tick in range(100):
        for leg, caller in callers.items():
            data = caller.sender.packet(caller.codec.encode(caller.frame()))
            for engine in engines:
                if leg in engine.members:
                    engine.members[leg].receive_rtp(data, ("127.0.0.1", 4000), tick * 0.02)
        for engine, found in zip(engines, reports, strict=True):
            if tick == 10:
                engine.apply(PlayPrompt("leg2", "muted", replace_room_audio=False, sequence=1))
                engine.apply(UpdateControls("leg5", Controls(muted=True, volume_db=3)))
            if tick == 50:
                engine.apply(RemoveParticipant("leg7"))
            engine.tick(tick * 0.02, tick * 0.02)
            found.extend(engine.take_reports())
    assert reports[0] == reports[1]
    kinds = {type(report) for report in reports[1]}
    assert {DigitPressed, TalkingChanged} <= kinds
    for leg, wire in wires[0].items():  # each leg's sender picks its own SSRC: payloads
        assert [p[12:] for p in wires[1][leg].packets] == [p[12:] for p in wire.packets]


def test_rooms_in_another_codec_or_rate_are_left_to_the_reference() -> None:
    vector = VectorTick()
    room = Room("r", 10)
    room.add(make_member(0, "PCMU", None, Wire()))
    assert vector.takes(room)
    assert not VectorTick(rate=16000).takes(room)
    assert set(CODECS) >= {"PCMU", "PCMA"}


def test_a_columnar_member_ticked_by_the_reference_after_the_vector_conceals_alike() -> None:
    """A room leaving the vectorised tick (a recording starts) carries on concealing from the
    frame the batch pop played last, as a member that never left `Room.tick` does."""
    rng = np.random.default_rng(5)
    worlds = [World(vectorised=False), World(vectorised=True, columns=True)]
    talker = Caller(0, "PCMU", "loud", rng)
    for world in worlds:
        for index in range(2):
            wire = Wire()
            world.join("r", make_member(index, "PCMU", None, wire), wire, in_columns=True)
    for tick in range(12):
        packets = [("p0", talker.sender.packet(talker.codec.encode(talker.frame())))]
        for world in worlds:
            world.deliver(packets if tick < 6 else [], tick * 0.02)
            if tick == 7:
                world.vector = None  # from here on, room by room
            world.tick()
    assert worlds[1].wires["p1"].packets == worlds[0].wires["p1"].packets
