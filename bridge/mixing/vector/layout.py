"""Who is where in the vectorised tick: its members row after row, kept room by room.

Why: the tick reads its members as arrays (rows, column slots, talking-state rows, flags, who
is sent to as rows), and those were rebuilt over every member of the process whenever one
joined, left or was changed by a command: ~6 ms at 1,750 members, so a ramp of 100 joins a
second per worker took a third of a core and made every room's tick late. Here each room's
part (`_RoomPiece`) is kept while its members, their jitter views (a slot attached or
detached) and their flags stay the same (`Layouts.changed` names a member a command touched);
a join rebuilds its own room's piece, and the layout is the pieces joined: a step per room
and array concatenations, not a step per member. Members keep their talking-state row
(`VoiceColumns.attach`) while others come and go around them.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from bridge.media.g711 import Codec
from bridge.mixing.columnar import column_of
from bridge.mixing.participant import Participant
from bridge.mixing.room import Room
from bridge.mixing.voice import VoiceColumns
from bridge.rtp.jitter_columns import JitterColumns
from bridge.rtp.sender_columns import ColumnSender, SenderColumns

G711_NAMES = frozenset({"PCMU", "PCMA"})

RowSends = tuple[SenderColumns, str, int, np.ndarray, np.ndarray]
"""Stream columns, codec name, payload type, members' positions, their stream slots."""

_SendKey = tuple[int, str, int]  # id(stream columns), codec name, payload type
_ColumnPart = tuple[JitterColumns, np.ndarray, np.ndarray, list[Participant], list[Codec]]


class _Rows:
    """Rows counted from their room's first row, gathered room by room and joined in one
    go (a per-room addition is a numpy call per room: the cost this module is there to cut)."""

    def __init__(self) -> None:
        self._local: list[np.ndarray] = []
        self._firsts: list[int] = []
        self._counts: list[int] = []

    def add(self, local: np.ndarray, first: int) -> None:
        self._local.append(local)
        self._firsts.append(first)
        self._counts.append(local.size)

    def joined(self) -> np.ndarray:
        return np.concatenate(self._local) + np.repeat(np.array(self._firsts), self._counts)


@dataclass
class ColumnGroup:
    """The members of one `JitterColumns` in a tick: their rows of the frames, their slots,
    and which of them are in each codec."""

    columns: JitterColumns
    members: list[Participant] = field(default_factory=list)
    room_of: list[int] = field(default_factory=list)
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    slots: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    by_codec: dict[str, tuple[Codec, np.ndarray]] = field(default_factory=dict)
    member_at: dict[int, int] = field(default_factory=dict)  # slot -> index in `members`
    tables: np.ndarray = field(default_factory=lambda: np.zeros((1, 256), np.int16))
    table_of: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    """The codecs' decode tables (in `by_codec` order) and each member's."""
    _rows: _Rows = field(default_factory=_Rows)
    _slots: list[np.ndarray] = field(default_factory=list)
    _codecs: list[Codec] = field(default_factory=list)

    def extend(self, first: int, part: _ColumnPart) -> None:
        _, rows, slots, members, codecs = part
        self._rows.add(rows, first)
        self._slots.append(slots)
        self.members.extend(members)
        self._codecs.extend(codecs)

    def freeze(self, table: Callable[[Codec], np.ndarray], rows_room: np.ndarray) -> None:
        self.rows = self._rows.joined()
        self.slots = np.concatenate(self._slots)
        self.room_of = rows_room[self.rows].tolist()
        self.member_at = dict(zip(self.slots.tolist(), range(self.slots.size), strict=True))
        codecs = self._codecs
        names = [codec.name for codec in codecs]
        if len(set(names)) == 1:  # the usual case: one codec
            self.by_codec = {names[0]: (codecs[0], np.arange(len(names), dtype=np.int64))}
        else:
            grouped: dict[str, tuple[Codec, list[int]]] = {}
            for j, codec in enumerate(codecs):
                grouped.setdefault(codec.name, (codec, []))[1].append(j)
            self.by_codec = {n: (c, np.array(js, np.int64)) for n, (c, js) in grouped.items()}
        self.table_of = np.zeros(len(self.members), np.int64)
        for t, (_, members) in enumerate(self.by_codec.values()):
            self.table_of[members] = t
        self.tables = np.stack([table(codec) for codec, _ in self.by_codec.values()])


@dataclass
class Layout:
    """The rooms' members as last seen (`key`), row after row (`people`): each one's row of
    the talking-state columns, each row's room, each room's first row and size; who is not
    held (heard by talking detection) and who may contribute (room mixing; not muted, on
    hold or held), the rooms where someone keys in band; who pops from which jitter columns
    (`columnar`) and who not (`others`: room, row, member); who is sent to as rows of which
    stream columns (`row_sends`) and, per room, the positions sent one by one (`slow`)."""

    key: list[list[Participant]]
    generations: list[tuple[JitterColumns, int]]
    people: list[Participant]
    voice_rows: np.ndarray
    rows_room: np.ndarray
    room_rows: list[tuple[int, int]]
    not_held: np.ndarray
    may_contribute: np.ndarray
    keying_in_band: list[int]
    others: list[tuple[int, int, Participant]]
    columnar: dict[int, ColumnGroup]
    row_sends: list[RowSends]
    slow: list[list[int]]


@dataclass
class _RoomPiece:
    """One room's part of the layout, rows and positions counted from its first member."""

    members: list[Participant]
    jitters: list[object]
    voice_rows: np.ndarray
    not_held: np.ndarray
    may_contribute: np.ndarray
    keying_in_band: bool
    others: list[int]
    columnar: dict[int, _ColumnPart]
    """By id(columns): the columns, its members' rows and slots, those members, their codecs."""
    row_sends: dict[_SendKey, tuple[SenderColumns, np.ndarray, np.ndarray]]
    """By stream columns and codec: the columns, its members' positions and slots."""
    slow: list[int]

    def holds(self, members: list[Participant], views_moved: bool) -> bool:
        """Still the room's: the same members and, once any columns' slots moved, the same
        jitter views."""
        if self.members != members:
            return False
        return not views_moved or all(map(operator.is_, [p.jitter for p in members], self.jitters))


class Layouts:
    """The tick's `Layout` for its rooms (`of`), rebuilt from the rooms' pieces, a room's
    piece only when that room changed; `voice` holds every member's talking state."""

    def __init__(self, table: Callable[[Codec], np.ndarray]) -> None:
        self.voice = VoiceColumns()
        self.current: Layout | None = None
        self._table = table
        self._pieces: dict[Room, _RoomPiece] = {}
        self._touched: set[Participant] = set()
        self._all_touched = False

    def changed(self, participant: Participant | None = None) -> None:
        """A command changed `participant` (its flags, prompts, media or sender), or anything
        (None): its room's piece, or every piece, is built again at the next tick."""
        if participant is None:
            self._all_touched = True
        else:
            self._touched.add(participant)

    def of(self, rooms: Sequence[Room]) -> Layout:
        layout = self.current
        views_moved = layout is None or any(c.generation != g for c, g in layout.generations)
        if (
            layout is not None
            and not views_moved
            and not self._touched
            and not self._all_touched
            and layout.key == [room.participants for room in rooms]
        ):
            return layout
        self.current = self._rebuild(rooms, views_moved)
        return self.current

    def _rebuild(self, rooms: Sequence[Room], views_moved: bool) -> Layout:
        old, touched, everything = self._pieces, self._touched, self._all_touched
        pieces: dict[Room, _RoomPiece] = {}
        fresh: list[_RoomPiece] = []
        for room in rooms:
            piece = old.get(room)
            if (
                piece is None
                or everything
                or not piece.holds(room.participants, views_moved)
                or (touched and not touched.isdisjoint(room.participants))
            ):
                piece = self._piece(room)
                fresh.append(piece)
            pieces[room] = piece
        staying = {participant for piece in fresh for participant in piece.members}
        for room, piece in old.items():  # who left the tick gets its talking state back
            if pieces.get(room) is piece:
                continue
            for participant in piece.members:
                voice = participant.voice
                if self.voice.owns(voice) and participant not in staying:
                    participant.voice = self.voice.detach(voice)  # type: ignore[arg-type]
        self._pieces = pieces
        self._touched = set()
        self._all_touched = False
        return self._joined(list(pieces.values()))

    def _piece(self, room: Room) -> _RoomPiece:
        members = list(room.participants)
        voice_rows = []
        for participant in members:
            voice = participant.voice
            if not self.voice.owns(voice):
                voice = participant.voice = self.voice.attach(voice)
            voice_rows.append(voice.row)  # type: ignore[union-attr]
        others: list[int] = []
        slow: list[int] = []
        columnar: dict[int, tuple[JitterColumns, list[int], list[int]]] = {}
        row_sends: dict[_SendKey, tuple[SenderColumns, list[int], list[int]]] = {}
        for j, participant in enumerate(members):
            view = column_of(participant)
            if view is None or participant.codec.name not in G711_NAMES:
                others.append(j)
            else:
                columns = view.columns
                group = columnar.setdefault(id(columns), (columns, [], []))
                group[1].append(j)
                group[2].append(view.slot)
            sender = participant.sender
            if isinstance(sender, ColumnSender) and sends_as_rows(participant):
                codec = participant.codec
                key = (id(sender.columns), codec.name, codec.payload_type)
                sends = row_sends.setdefault(key, (sender.columns, [], []))
                sends[1].append(j)
                sends[2].append(sender.slot)
            else:
                slow.append(j)
        held = np.array([p.held for p in members], np.bool_)
        blocked = np.array([p.muted or p.on_hold for p in members], np.bool_)
        return _RoomPiece(
            members,
            [p.jitter for p in members],
            np.array(voice_rows, np.int64),
            ~held,
            ~blocked & ~held if room.mixing else np.zeros(len(members), np.bool_),
            any(p.inband_dtmf for p in members),
            others,
            {
                key: (
                    columns,
                    _array(rows),
                    _array(slots),
                    [members[j] for j in rows],
                    [members[j].codec for j in rows],
                )
                for key, (columns, rows, slots) in columnar.items()
            },
            {key: (c, _array(at), _array(slots)) for key, (c, at, slots) in row_sends.items()},
            slow,
        )

    def _joined(self, pieces: list[_RoomPiece]) -> Layout:
        sizes = [len(piece.members) for piece in pieces]
        firsts = np.cumsum([0, *sizes[:-1]]).tolist() if pieces else []
        others: list[tuple[int, int, Participant]] = []
        columnar: dict[int, ColumnGroup] = {}
        sends: dict[_SendKey, tuple[SenderColumns, _Rows, list[np.ndarray]]] = {}
        for k, (piece, first) in enumerate(zip(pieces, firsts, strict=True)):
            if piece.others:
                others.extend((k, first + j, piece.members[j]) for j in piece.others)
            for key, part in piece.columnar.items():
                group = columnar.get(key)
                if group is None:
                    group = columnar[key] = ColumnGroup(part[0])
                group.extend(first, part)
            for key, (stream, positions, slots) in piece.row_sends.items():
                joined = sends.get(key)
                if joined is None:
                    joined = sends[key] = (stream, _Rows(), [])
                joined[1].add(positions, first)
                joined[2].append(slots)
        rows_room = np.repeat(np.arange(len(pieces), dtype=np.int64), sizes)
        for group in columnar.values():
            group.freeze(self._table, rows_room)

        def joined(arrays: list[np.ndarray], dtype: type) -> np.ndarray:
            return np.concatenate(arrays) if arrays else np.zeros(0, dtype)

        return Layout(
            key=[piece.members for piece in pieces],
            generations=[(g.columns, g.columns.generation) for g in columnar.values()],
            people=[participant for piece in pieces for participant in piece.members],
            voice_rows=joined([piece.voice_rows for piece in pieces], np.int64),
            rows_room=rows_room,
            room_rows=list(zip(firsts, sizes, strict=True)),
            not_held=joined([piece.not_held for piece in pieces], np.bool_),
            may_contribute=joined([piece.may_contribute for piece in pieces], np.bool_),
            keying_in_band=[k for k, piece in enumerate(pieces) if piece.keying_in_band],
            others=others,
            columnar=columnar,
            row_sends=[
                (stream, name, payload_type, at.joined(), np.concatenate(slots))
                for (_, name, payload_type), (stream, at, slots) in sends.items()
            ],
            slow=[piece.slow for piece in pieces],
        )


def _array(values: list[int]) -> np.ndarray:
    return np.array(values, np.int64)


def sends_as_rows(participant: Participant) -> bool:
    """Whether the tick's packet to this member is its room's total or its own mix-minus row,
    as is: no prompt, volume, hold, deafness or SRTP, and an address to send to."""
    return not (
        participant.on_hold
        or participant.held
        or participant.deaf
        or participant.volume_db
        or participant.prompts.busy
        or participant.srtp is not None
        or participant.remote[1] == 0
    )
