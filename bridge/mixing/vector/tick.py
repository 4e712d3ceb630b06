"""One mix-minus tick over all the G.711 rooms of a process at once.

Why: the reference tick (`Room.tick`) costs some fifteen numpy calls per room, ~115 us for a
room of ten, whatever the room's size; with hundreds of small rooms per worker that, not the
arithmetic, is the tick. Here the rooms' frames sit in one matrix, room after room, and each
step is one numpy call for the whole process: one table lookup per codec to decode, one pass
for the frames' energies (talking detection and who contributes: the members' talking state
lives in `VoiceColumns`, their flags in arrays kept until a command, `changed`), one gather of
the contributors' rows, one segment sum per room (`np.add.reduceat`), one subtraction for the
contributors' mix-minus rows, one saturation, one table lookup per codec to encode. A room's
listeners who contribute nothing share its total, encoded once per codec, as in the reference.

What stays per room: in-band DTMF detection (the room's own `DtmfDetector`, only in rooms
where someone keys in-band), hold music, prompts and listening volume (per listener, as in the
reference). What stays per participant: the jitter buffer pop and the send, Python objects as
before, but for a shared RTP port's members: their buffers live in `JitterColumns`, popped in
one call, payloads straight to the decode lookup; their streams live in `SenderColumns`, and
those who hear their room's total or their own mix-minus row as is (no prompt, volume, hold,
deafness or SRTP: `sends_as_rows`) get it as rows of one buffer, headers built from the
columns (`_send`). Who goes which way is sorted once per change, not per tick, and only in
the room that changed (`layout.py`: a join or a command costs its room, not the process).

The output is the reference tick's, bit for bit (`tests/unit/test_vector_tick.py` runs random
rooms through both): same payloads to the same members in the same order per member, same
digits, same talking changes, same prompt and hold-music progress. Rooms with any member in
another codec or sample rate are left to the reference tick (`takes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bridge.media.g711 import Codec
from bridge.media.prompt import overlay
from bridge.mixing.participant import Participant
from bridge.mixing.room import VOICE_POWER, Digit, Room, _scaled, gather_frames
from bridge.mixing.vector.layout import G711_NAMES, Layout, Layouts
from bridge.rtp import native
from bridge.rtp.jitter_columns import ColumnJitter

G711_RATE = 8000
_INT16_MIN = np.int32(-32768)
_INT16_MAX = np.int32(32767)


def _decode_table(codec: Codec) -> np.ndarray:
    """The codec's byte -> int16 table (G.711 only), taken from its decoder once."""
    return codec.decode(bytes(range(256)))


@dataclass
class _Plan:
    """One tick's mix layout: every member's row of the mix (its own, or -1 - k for room k's
    shared total), contributors' rows of the frames (room after room) and the room of each,
    each room's first member row and size, the segment starts of rooms with contributors
    (in the contributors) and those rooms."""

    row_of: np.ndarray
    contributors: np.ndarray
    contributor_room: np.ndarray
    room_rows: list[tuple[int, int]]
    starts: np.ndarray
    rooms_with: np.ndarray


class VectorTick:
    """Buffers for one process' tick over many rooms at `rate` (G.711: 8000 Hz, 160 samples).

    `tick(rooms)` mixes the given rooms (each one `takes` accepted) and returns each room's
    digits, as `Room.tick` would have.
    """

    def __init__(self, rate: int = G711_RATE, compiled: bool | None = None) -> None:
        self.rate = rate
        self.samples = rate // 50
        self._frames = np.zeros((0, self.samples), np.int16)
        self._tables: dict[str, np.ndarray] = {}
        self._takes: dict[Room, tuple[list[Participant], bool]] = {}
        self.layouts = Layouts(self._table)
        """Who is where, room by room (`layout.py`), and every member's talking state."""
        self.compiled = native.wanted() if compiled is None else compiled
        """Mix and encode in `_rtpcols.c` (else numpy: `_mix`, `_encode`)."""
        self._encode_tables: dict[tuple[str, ...], np.ndarray] = {}
        self._totals = np.zeros((0, self.samples), np.int32)

    def takes(self, room: Room) -> bool:
        """True when every member is G.711 at this tick's rate (an empty room is skipped)."""
        if self.rate != G711_RATE:
            return False
        known = self._takes.get(room)  # a codec changes by a command (`changed`)
        if known is not None and known[0] == room.participants:
            return known[1]
        taken = all(
            p.codec.name in G711_NAMES and p.codec.clock_rate == G711_RATE
            for p in room.participants
        )
        self._takes[room] = (list(room.participants), taken)
        return taken

    def tick(self, rooms: Sequence[Room]) -> list[list[Digit]]:
        """Mix one 20 ms frame of every room in `rooms`; each room's digits, as `Room.tick`."""
        count = sum(len(room.participants) for room in rooms)
        if count == 0:
            return [[] for _ in rooms]
        frames = self._slots(count)
        layout = self.layouts.of(rooms)
        digits, codecs = self._decode(rooms, frames, layout)
        wide = frames.astype(np.float32)
        np.multiply(wide, wide, out=wide)
        energies = wide.sum(axis=1)  # what DtmfDetector computes per room, bit for bit
        plan = self._plan(rooms, layout, frames, energies, digits)
        if self.compiled:
            mixed, encoded = self._mix_compiled(frames, plan, len(rooms), codecs)
        else:
            mixed = self._mix(frames, plan, len(rooms))
            encoded = self._encode(mixed, codecs)
        return self._send(rooms, layout, plan, mixed, encoded, digits)

    def _plan(
        self,
        rooms: Sequence[Room],
        layout: Layout,
        frames: np.ndarray,
        energies: np.ndarray,
        digits: list[list[Digit]],
    ) -> _Plan:
        """Who talks (voice activity, talking changes), who contributes to its room's mix,
        and which row of the mix each member hears; in-band keys where someone keys in-band.
        All as arrays over the members, but for the rooms keying in band (their detector)."""
        loud = energies > VOICE_POWER * self.samples
        np.logical_and(loud, layout.not_held, out=loud)
        changed = self.layouts.voice.step(loud, layout.voice_rows)
        if changed.size:  # rare: in row order, so each room's in its members' order
            people = layout.people
            for i, k in zip(changed.tolist(), layout.rows_room[changed].tolist(), strict=True):
                rooms[k].talk_changes.append(people[i])
        contributing = energies > 0
        np.logical_and(contributing, layout.may_contribute, out=contributing)
        for k in layout.keying_in_band:
            room = rooms[k]
            people = room.participants
            first, n = layout.room_rows[k]
            found = room.detector.process(frames[first : first + n], [p.inband for p in people])
            for participant, digit in zip(people, found, strict=True):
                if digit is not None and participant.inband_dtmf:
                    digits[k].append((participant, digit, "inband"))
            tones = [p.inband_dtmf and p.inband.tone_present for p in people]  # type: ignore[union-attr]
            contributing[first : first + n] &= ~np.array(tones, np.bool_)
        contributors = np.flatnonzero(contributing)
        room_of = layout.rows_room
        row_of = -1 - room_of  # the room's shared row (after the contributors' rows)
        row_of[contributors] = np.arange(contributors.size)
        contributor_room = room_of[contributors]
        starts = np.flatnonzero(np.diff(contributor_room, prepend=-1))
        return _Plan(
            row_of, contributors, contributor_room, layout.room_rows, starts,
            contributor_room[starts],
        )  # fmt: skip

    def _slots(self, count: int) -> np.ndarray:
        if count > self._frames.shape[0]:
            self._frames = np.zeros((max(count, 2 * self._frames.shape[0]), self.samples), np.int16)
        return self._frames[:count]

    def _decode(
        self, rooms: Sequence[Room], frames: np.ndarray, layout: Layout
    ) -> tuple[list[list[Digit]], dict[str, Codec]]:
        """Each member's frame for this tick into `frames` (room after room): the usual full
        frames in one table lookup per codec, a loss being faded or an odd-sized payload on
        its own. Members whose jitter buffers live in `JitterColumns` (a shared port's) pop
        in one call per columns and their rows go straight to the lookup. Returns each room's
        digits received and the codecs in use."""
        if layout.columnar:
            return self._decode_with_columns(rooms, frames, layout)
        samples = self.samples
        digits: list[list[Digit]] = []
        codecs: dict[str, Codec] = {}
        batches: dict[str, tuple[list[int], list[bytes]]] = {}
        silent: list[int] = []
        i = 0
        for room in rooms:
            members = room.participants
            digits.append(gather_frames(members, frames, i, samples, batches, silent, codecs))
            i += len(members)
        self._decode_batches(frames, batches, codecs, silent, i)
        return digits, codecs

    def _decode_batches(
        self,
        frames: np.ndarray,
        batches: dict[str, tuple[list[int], list[bytes]]],
        codecs: dict[str, Codec],
        silent: list[int],
        count: int,
    ) -> None:
        if silent:
            frames[silent] = 0
        for name, (rows, payloads) in batches.items():
            codes = np.frombuffer(b"".join(payloads), np.uint8)
            table = self._table(codecs[name])
            if len(rows) == count:  # everyone, in one codec: in place
                table.take(codes, out=frames.reshape(-1))
            else:
                frames[rows] = table.take(codes).reshape(len(rows), self.samples)

    def _decode_with_columns(
        self, rooms: Sequence[Room], frames: np.ndarray, layout: Layout
    ) -> tuple[list[list[Digit]], dict[str, Codec]]:
        samples = self.samples
        codecs: dict[str, Codec] = {}
        batches: dict[str, tuple[list[int], list[bytes]]] = {}
        silent: list[int] = []
        found: list[tuple[int, int, Digit]] = []  # (room, row, digit)
        for k, row, participant in layout.others:
            got = gather_frames((participant,), frames, row, samples, batches, silent, codecs)
            found.extend((k, row, digit) for digit in got)
        self._decode_batches(frames, batches, codecs, silent, -1)  # (-1: never all the rows)
        silent = []
        for group in layout.columnar.values():
            columns = group.columns
            payloads, lengths = columns.pop_decoded(
                group.slots, frames, group.rows, group.tables, group.table_of
            )  # whole frames decoded into their rows: the rest is below
            for name, (codec, _) in group.by_codec.items():
                codecs.setdefault(name, codec)
            full = lengths == samples
            if full.all():
                continue
            for j in np.flatnonzero(~full).tolist():
                participant, row, slot = group.members[j], int(group.rows[j]), int(group.slots[j])
                length = int(lengths[j])
                if length >= 0:  # an odd-sized payload
                    payload = (
                        columns.last_payload(slot)
                        if length > columns.width
                        else payloads[j, :length].tobytes()
                    )
                    participant.codec.decode_into(payload, frames[row])
                    continue
                view = participant.jitter
                assert isinstance(view, ColumnJitter)
                view.settle()
                faded = participant.concealer.fade()
                if faded is None:
                    silent.append(row)
                else:
                    frames[row] = faded
        if silent:
            frames[silent] = 0
        for group in layout.columnar.values():  # digits only where one came (`keyed`)
            keyed = group.columns.keyed
            if not keyed:
                continue
            for slot in keyed:
                j = group.member_at.get(slot)
                if j is None:
                    continue  # not ticked here: its room's own tick takes its digits
                participant = group.members[j]
                k, row = group.room_of[j], int(group.rows[j])
                found.extend((k, row, (participant, d, m)) for d, m in participant.digits)
                participant.digits.clear()
            keyed.clear()
        digits: list[list[Digit]] = [[] for _ in rooms]
        found.sort(key=lambda item: item[1])  # stable: a member's own digits keep their order
        for k, _, digit in found:
            digits[k].append(digit)
        return digits, codecs

    def _table(self, codec: Codec) -> np.ndarray:
        table = self._tables.get(codec.name)
        if table is None:
            table = self._tables[codec.name] = _decode_table(codec)
        return table

    def _mix(self, frames: np.ndarray, plan: _Plan, room_count: int) -> np.ndarray:
        """(contributors + rooms, samples) int16: each contributor's mix-minus row, then each
        room's saturated total (what its other members hear)."""
        count = len(plan.contributors)
        wide = np.zeros((count + room_count, self.samples), np.int32)
        if count:
            own = frames[plan.contributors]
            sums = np.add.reduceat(own, plan.starts, axis=0, dtype=np.int32)
            totals = wide[count:]
            totals[plan.rooms_with] = sums
            np.subtract(totals[plan.contributor_room], own, out=wide[:count])
        np.maximum(wide, _INT16_MIN, out=wide)
        np.minimum(wide, _INT16_MAX, out=wide)
        return wide.astype(np.int16)

    def _mix_compiled(
        self, frames: np.ndarray, plan: _Plan, room_count: int, codecs: dict[str, Codec]
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """`_mix` and `_encode` in one compiled pass (`_rtpcols.mix`), the same bytes."""
        count, samples = len(plan.contributors), self.samples
        names = tuple(codecs)
        tables = self._encode_tables.get(names)
        if tables is None:
            tables = np.stack(
                [codecs[n].encode_table for n in names] or [np.zeros(65536, np.uint8)]
            )
            self._encode_tables[names] = tables
        if self._totals.shape[0] < room_count:
            self._totals = np.zeros((max(room_count, 2 * self._totals.shape[0]), samples), np.int32)
        mixed = np.empty((count + room_count, samples), np.int16)
        encoded = np.empty((len(names), count + room_count, samples), np.uint8)
        native.module().mix(
            frames, samples, plan.contributors, plan.contributor_room, count, room_count,
            self._totals, mixed, tables, len(names), encoded,
        )  # fmt: skip
        return mixed, dict(zip(names, encoded, strict=True))

    @staticmethod
    def _encode(mixed: np.ndarray, codecs: dict[str, Codec]) -> dict[str, np.ndarray]:
        """Each codec's payload rows (uint8), one per row of `mixed`."""
        as_index = mixed.view(np.uint16)
        return {name: codec.encode_table.take(as_index) for name, codec in codecs.items()}

    def changed(self, participant: Participant | None = None) -> None:
        """A member's flags, prompts, media (codec) or sender changed (`participant`, or
        anything: None): the next tick sorts its room (or every room) again. The engine calls
        it on every command; who changes members otherwise must call it too. Who is in which
        room the tick sees for itself."""
        self.layouts.changed(participant)
        if participant is None:
            self._takes.clear()
            return
        for room, (members, _) in list(self._takes.items()):
            if participant in members:
                del self._takes[room]

    def _send(
        self,
        rooms: Sequence[Room],
        layout: Layout,
        plan: _Plan,
        mixed: np.ndarray,
        encoded: dict[str, np.ndarray],
        digits: list[list[Digit]],
    ) -> list[list[Digit]]:
        """Each member's payload, as `Room.tick` sends it: the common case as rows of its
        streams' columns, the rest one by one."""
        samples = self.samples
        row_of, shared_base = plan.row_of, len(plan.contributors)
        if layout.row_sends:
            rows = np.where(row_of < 0, shared_base - 1 - row_of, row_of)  # -1 - k: room k's total
            for columns, name, payload_type, positions, slots in layout.row_sends:
                columns.send_rows(slots, payload_type, encoded[name], rows[positions], samples)
        for k, room in enumerate(rooms):
            slow = layout.slow[k]
            if not slow:
                continue
            first = plan.room_rows[k][0]
            people = room.participants
            shared = shared_base + k
            totals: dict[str, bytes] = {}
            music: dict[str, bytes] = {}
            for j in slow:
                participant = people[j]
                if participant.on_hold:
                    continue
                codec = participant.codec
                if participant.held:
                    if not music:
                        music = room._hold_music_frames({p.codec.name: p.codec for p in people})
                    participant.send_payload(music[codec.name])
                    continue
                row = int(row_of[first + j])
                if row < 0:
                    row = shared
                prompts = participant.prompts
                prompt = None
                if prompts.busy:
                    prompt = prompts.next_frame()
                    if not prompts.busy:
                        self.layouts.changed(participant)  # over: it may take the rows now
                if prompt is None and participant.volume_db == 0:
                    if participant.deaf:
                        participant.send_payload(codec.silence)
                    elif row == shared:
                        total = totals.get(codec.name)
                        if total is None:
                            total = totals[codec.name] = encoded[codec.name][shared].tobytes()
                        participant.send_payload(total)
                    else:
                        participant.send_payload(encoded[codec.name][row].tobytes())
                    continue
                heard = np.zeros(samples, np.int16) if participant.deaf else mixed[row]
                if participant.volume_db:
                    heard = _scaled(heard, participant.volume_db)
                if prompt is not None:
                    frame, replace = prompt
                    heard = overlay(heard, frame, replace=replace)
                participant.send_payload(codec.encode(heard))
        return digits
