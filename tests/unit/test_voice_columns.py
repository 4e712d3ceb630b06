"""Talking detection as columns (`VoiceColumns`, the vectorised tick's) against `VoiceActivity`.

The vectorised tick keeps its members' talking state in arrays and each member's
`Participant.voice` is a view of its row. These tests drive the hysteresis edges (a start after
exactly 3 loud frames, a stop after exactly 25 quiet ones, runs broken one frame short) through
both, with holds, mutes, room mixing, joins, leaves, moves, rooms leaving the vectorised tick
for a while (a recording) and hand-overs (pickling) in between, and require the same talking
changes and the same `voice` state for every member after every tick.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from bridge.media.g711 import PCMU
from bridge.media.tones import ToneSource
from bridge.mixing.participant import Participant
from bridge.mixing.room import Room
from bridge.mixing.vector.tick import VectorTick
from bridge.mixing.voice import ColumnVoice, VoiceActivity, VoiceColumns
from tests.unit.test_room_shared_mix import Wire, make_member


def test_columns_step_as_each_member_updates_alone() -> None:
    rng = np.random.default_rng(1)
    count = 64
    columns = VoiceColumns(count)
    plain = [VoiceActivity() for _ in range(count)]
    length = rng.integers(1, 30, count)  # each row alternates runs of about its own length
    for tick in range(600):
        loud = (tick // length) % 2 == 0
        loud ^= rng.random(count) < 0.05
        expected = [i for i, v in enumerate(plain) if v.update(bool(loud[i]))]
        assert columns.step(loud).tolist() == expected
        assert columns.talking.tolist() == [v.talking for v in plain]
        assert columns.run.tolist() == [v.run for v in plain]


def test_rows_handed_out_step_as_their_members_and_others_stay() -> None:
    """Slots (`attach`) stepped through `rows` in any order: each as its member's own
    `VoiceActivity`; rows not named, and rows given back, are left as they were."""
    rng = np.random.default_rng(2)
    columns = VoiceColumns()
    views = [columns.attach(VoiceActivity(bool(i % 2), i % 3)) for i in range(100)]  # grows
    plain = [view.plain() for view in views]
    assert [view.row for view in views] == list(range(100))
    gone = views.pop(40)
    assert columns.detach(gone) == plain.pop(40)
    again = columns.attach(VoiceActivity(True, 1))
    assert again.row == 40  # a row given back is handed out again
    views.append(again)
    plain.append(VoiceActivity(True, 1))
    for _ in range(300):
        order = rng.permutation(len(views))[: int(rng.integers(1, len(views)))]
        rows = np.array([views[i].row for i in order], np.int64)
        loud = rng.random(order.size) < 0.5
        others = set(range(len(views))) - set(order.tolist())
        untouched = {i: (views[i].talking, views[i].run) for i in others}
        expected = [n for n, i in enumerate(order) if plain[i].update(bool(loud[n]))]
        assert columns.step(loud, rows).tolist() == expected
        for i, view in enumerate(views):
            if i in untouched:
                assert (view.talking, view.run) == untouched[i]
            else:
                assert view.plain() == plain[i]


def test_a_view_reads_writes_updates_and_pickles_as_its_row() -> None:
    columns = VoiceColumns(3)
    view = ColumnVoice(columns, 1)
    alone = VoiceActivity()
    for loud in [True, True, False, True, True, True, False]:
        assert view.update(loud) == alone.update(loud)
        assert (view.talking, view.run) == (alone.talking, alone.run)
    view.run = 7
    assert columns.run.tolist() == [0, 7, 0] and columns.talking.tolist() == [False, True, False]
    copied = pickle.loads(pickle.dumps(view))
    assert isinstance(copied, VoiceActivity) and (copied.talking, copied.run) == (True, 7)
    assert view.plain() == VoiceActivity(True, 7)


class Talker:
    """Loud tone and quiet frames in runs whose lengths sit on the hysteresis edges."""

    EDGES = (1, 2, 3, 4, 23, 24, 25, 26)

    def __init__(self, index: int, rng: np.random.Generator) -> None:
        self.rng = rng
        self.loud = ToneSource(300.0 + 41.0 * index, 12000)
        self.left = 0
        self.is_loud = False
        self.sequence = index * 1000

    def packet(self) -> bytes:
        if self.left == 0:
            self.is_loud = not self.is_loud
            self.left = int(self.rng.choice(self.EDGES))
        self.left -= 1
        frame = self.loud.next_frame(160)
        if not self.is_loud:  # quiet but sounding: still mixed, not talking
            frame = (frame // 400).astype(np.int16)
        self.sequence += 1
        header = bytes([0x80, 0]) + (self.sequence & 0xFFFF).to_bytes(2, "big")
        return header + (self.sequence * 160).to_bytes(4, "big") + b"\0\0\0\1" + PCMU.encode(frame)


class World:
    def __init__(self, vectorised: bool) -> None:
        self.vector = VectorTick() if vectorised else None
        self.rooms: dict[str, Room] = {}
        self.talking: list[tuple[str, str, bool]] = []
        self.recorded: set[str] = set()  # rooms left to `Room.tick` for now (a recording)

    def find(self, member_id: str) -> tuple[Room, Participant]:
        for room in self.rooms.values():
            member = room.find(member_id)
            if member is not None:
                return room, member
        raise KeyError(member_id)

    def join(self, room: str, member: Participant) -> None:
        self.rooms.setdefault(room, Room(room, 1000)).add(member)

    def leave(self, member_id: str) -> Participant:
        room, member = self.find(member_id)
        room.remove(member)
        if not room.participants:
            del self.rooms[room.name]
        return member

    def changed(self, member: Participant | None = None) -> None:
        if self.vector is not None:
            self.vector.changed(member)

    def tick(self) -> None:
        rooms = list(self.rooms.values())
        if self.vector is None:
            for room in rooms:
                room.tick()
        else:
            taken = [room for room in rooms if room.name not in self.recorded]
            self.vector.tick(taken)
            for room in rooms:
                if room.name in self.recorded:
                    room.tick()
        for room in rooms:
            self.talking.extend((room.name, p.id, p.voice.talking) for p in room.talk_changes)
            room.talk_changes.clear()

    def voices(self) -> dict[str, tuple[bool, int]]:
        return {
            p.id: (p.voice.talking, p.voice.run)
            for room in self.rooms.values()
            for p in room.participants
        }


@pytest.mark.parametrize("seed", range(16))
def test_talking_changes_and_voice_state_match_the_reference(seed: int) -> None:
    rng = np.random.default_rng(500 + seed)
    worlds = [World(vectorised=False), World(vectorised=True)]
    talkers: dict[str, Talker] = {}
    away: dict[str, list[Participant]] = {}  # left for a while: handed over, pickled
    next_index = 0
    room_count = int(rng.integers(1, 6))

    def join(room: str) -> None:
        nonlocal next_index
        index, next_index = next_index, next_index + 1
        in_band = rng.random() < (0.3 if seed % 2 else 0.0)  # keys in band: the room detects
        for world in worlds:
            world.join(room, make_member(index, "PCMU", None if in_band else 101, Wire()))
        talkers[f"p{index}"] = Talker(index, rng)

    for r in range(room_count):
        for _ in range(int(rng.integers(1, 12))):
            join(f"room{r}")
    for tick in range(200):
        for member_id, talker in talkers.items():
            if member_id in away:
                continue
            data = talker.packet()
            for world in worlds:
                _, member = world.find(member_id)
                member.receive_rtp(data, member.remote, tick * 0.02)
        roll = rng.random()
        member_id = str(rng.choice(sorted(talkers)))
        if roll < 0.25 and member_id not in away:  # a flag, by a command
            kind = int(rng.integers(4))
            for world in worlds:
                room, member = world.find(member_id)
                if kind == 0:
                    member.held = not member.held
                elif kind == 1:
                    member.muted = not member.muted
                elif kind == 2:
                    member.on_hold = not member.on_hold
                else:
                    room.mixing = not room.mixing
                world.changed(None if kind == 3 else member)
        elif roll < 0.3:
            touched = None if member_id in away else worlds[1].find(member_id)[1]
            worlds[1].changed(touched)  # a command that changes nothing here
        elif roll < 0.36:
            join(f"room{int(rng.integers(room_count + 1))}")
        elif roll < 0.42 and member_id not in away and len(talkers) > 1:  # leaves for a while
            away[member_id] = [
                pickle.loads(pickle.dumps(world.leave(member_id).voice)) for world in worlds
            ]
        elif roll < 0.48 and away:  # comes back (a hand-over back), in some room
            back = str(rng.choice(sorted(away)))
            target = f"room{int(rng.integers(room_count + 1))}"
            for world, voice in zip(worlds, away.pop(back), strict=True):
                member = make_member(int(back[1:]), "PCMU", 101, Wire())
                member.voice = voice
                world.join(target, member)
        elif roll < 0.54 and member_id not in away:  # moves to another room
            target = f"room{int(rng.integers(room_count + 1))}"
            for world in worlds:
                world.join(target, world.leave(member_id))
        elif roll < 0.58:  # a room leaves the vectorised tick for a while, or comes back
            worlds[1].recorded ^= {f"room{int(rng.integers(room_count + 1))}"}
        for world in worlds:
            world.tick()
        assert worlds[1].talking == worlds[0].talking
        assert worlds[1].voices() == worlds[0].voices()
        for reference, vectorised in away.values():
            assert isinstance(vectorised, VoiceActivity) and vectorised == reference
    starts = [t for t in worlds[0].talking if t[2]]
    assert len(starts) > 3 and len(worlds[0].talking) > len(starts)  # starts and stops seen


def test_members_who_leave_get_their_state_back_as_a_plain_voice() -> None:
    vector = VectorTick()
    rooms = [Room("a", 10), Room("b", 10)]
    members = [make_member(i, "PCMU", 101, Wire()) for i in range(4)]
    for i, member in enumerate(members):
        rooms[i % 2].add(member)
    talker = Talker(0, np.random.default_rng(0))
    for tick in range(5):
        members[0].receive_rtp(talker.packet(), members[0].remote, tick * 0.02)
        talker.left = 5  # loud throughout
        vector.tick(rooms)
    assert isinstance(members[0].voice, ColumnVoice) and members[0].voice.talking
    rooms[0].remove(members[0])
    vector.tick(rooms)
    assert members[0].voice == VoiceActivity(True, 0)
    assert all(isinstance(m.voice, ColumnVoice) for m in members[1:])
