"""The vectorised tick's layout is kept room by room (`bridge/mixing/vector/layout.py`).

That its output stays the reference's through joins, leaves, moves, commands and column
changes is `test_vector_tick.py`'s job; here, that a join or a command costs its own room and
not the process: the other rooms' pieces are the same objects after it, and every member
keeps its row of the talking-state columns.
"""

from __future__ import annotations

from bridge.mixing.voice import ColumnVoice
from tests.unit.test_room_shared_mix import Wire, make_member
from tests.unit.test_vector_tick import World


def _world(rooms: int, size: int) -> World:
    world = World(vectorised=True, columns=True)
    for r in range(rooms):
        for i in range(size):
            wire = Wire()
            world.join(f"r{r}", make_member(r * size + i, "PCMU", 101, wire), wire, True)
    world.tick()
    return world


def _voice_rows(world: World) -> dict[str, int]:
    rows = {}
    for room in world.rooms.values():
        for member in room.participants:
            assert isinstance(member.voice, ColumnVoice)
            rows[member.id] = member.voice.row
    return rows


def test_a_join_or_a_command_rebuilds_its_own_room_only() -> None:
    world = _world(rooms=4, size=5)
    assert world.vector is not None
    layouts = world.vector.layouts
    before, rows = dict(layouts._pieces), _voice_rows(world)
    wire = Wire()
    world.join("r1", make_member(100, "PCMU", 101, wire), wire, True)
    world.tick()
    after = layouts._pieces
    assert [after[room] is before[room] for room in before] == [True, False, True, True]
    assert {k: v for k, v in _voice_rows(world).items() if k in rows} == rows
    assert layouts.current is not None and len(layouts.current.people) == 21

    before = dict(after)
    member = world.rooms["r3"].participants[2]
    member.muted = True
    world.vector.changed(member)
    world.tick()
    assert [layouts._pieces[room] is before[room] for room in before] == [True] * 3 + [False]
    first, _ = layouts.current.room_rows[3]
    assert not layouts.current.may_contribute[first + 2]

    before = dict(layouts._pieces)
    world.tick()  # nothing changed: nothing rebuilt
    assert all(layouts._pieces[room] is before[room] for room in before)
    world.vector.changed()  # a room's command: every room again
    world.tick()
    assert not any(layouts._pieces[room] is before[room] for room in before)
    assert {k: v for k, v in _voice_rows(world).items() if k in rows} == rows


def test_who_leaves_gives_its_talking_row_back() -> None:
    world = _world(rooms=2, size=3)
    assert world.vector is not None
    leaving = world.leave("p1")
    world.tick()
    assert not isinstance(leaving.voice, ColumnVoice)
    wire = Wire()
    world.join("r0", make_member(50, "PCMU", 101, wire), wire, True)
    world.tick()
    joined = world.find("p50")[1].voice
    assert isinstance(joined, ColumnVoice) and joined.row == 1  # the row p1 gave back
