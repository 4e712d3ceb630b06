"""Many members' jitter buffers, loss counts and receive counters as numpy columns, sans-I/O.

Why: on a shared RTP port each member sends one packet per tick, so any Python run per packet
costs as much as Python per member per tick. Here a whole `recvmmsg` batch is pushed
(`push_batch`) and a whole tick popped (`pop_batch`) with a few numpy calls. The policy is
`JitterBuffer`'s and the counting `StreamLoss`'s, exactly (`tests/unit/test_jitter_columns.py`
runs random streams through both): the usual case (playing, same SSRC, within
MAX_SEQUENCE_JUMP, no overflow beyond one frame; the next frame there when popped) is done as
arrays, the rest (SSRC change, jumps and probation, buffering, the waiting and rebuffering
rules of `JitterBuffer.pop`) by a per-member port of `JitterBuffer`'s code over the same
columns (`push_one`, `pop_one`).

Layout: each member has a slot; its frames sit in a ring of RING payload rows indexed by
sequence number modulo RING. That never collides: the queued sequences of a `JitterBuffer`
always lie within 2 * MAX_SEQUENCE_JUMP + 1 of each other (new frames within
MAX_SEQUENCE_JUMP of the next to play, or of the first queued while buffering). A row holds
`width` payload bytes (a 20 ms G.711 frame); a longer payload is kept as bytes on the side.

Several packets of one member in one batch are pushed in rounds (the first of each member,
then the second, ...), so each member's packets go in one by one, in order.

`ColumnJitter` and `ColumnLoss` stand in for a member's `JitterBuffer` and `StreamLoss`
(`Participant.jitter`, `.loss`) while it is in the columns; `attach` takes a buffer's state in
and `detach` gives one back. Opus' `rebuilds_lost` is ported in the per-member path only: the
shared port's array path is G.711.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from bridge.rtp import native
from bridge.rtp.jitter import EMPTY_POPS_TO_REBUFFER, MAX_SEQUENCE_JUMP, JitterBuffer, JitterStats
from bridge.rtp.packet import RtpPacket
from bridge.rtp.row_field import RowField
from bridge.rtp.seq import seq_delta
from bridge.rtp.stream_loss import MAX_DROPOUT, MAX_MISORDER, StreamLoss

RING = 256
"""Payload rows per member: a power of two over 2 * MAX_SEQUENCE_JUMP + 1."""
_MASK = RING - 1
NONE = -1
_STAT_FIELDS = (
    "received", "played", "lost", "late", "duplicate", "reset", "overflow", "rejected_jump",
    "waited",
)  # fmt: skip


class JitterColumns:
    """The jitter buffers of many members (slots), their loss counts and packets in."""

    def __init__(self, capacity: int = 16, width: int = 160, compiled: bool | None = None) -> None:
        self.width = width
        self.compiled = native.wanted() if compiled is None else compiled
        """The batch calls' path: `_rtpcols.c` or numpy (`bridge/rtp/native.py`)."""
        self._native: Any = native.module() if self.compiled else None
        self._table = np.zeros(0, np.uint64)  # the C code's view of the columns
        self._token = 0  # each compiled push batch's own, for its `deferred` marks
        self.capacity = 0
        self.generation = 0
        """Changes whenever a slot is attached or detached (for callers' cached layouts)."""
        self._free: list[int] = []
        self.odd: dict[tuple[int, int], bytes] = {}  # (slot, ring row): payloads over `width`
        self._probation_odd: dict[int, bytes] = {}
        self._last_odd: dict[int, bytes] = {}
        self.keyed: set[int] = set()
        """Slots whose member was given a digit (RFC 4733) since the tick last took them: the
        tick looks for digits there only, not in every member each tick."""
        self._grow(capacity)

    # --- slots ------------------------------------------------------------------------------

    def _grow(self, capacity: int) -> None:
        old = self.capacity

        def column(dtype: type, fill: float | int, *shape: int) -> np.ndarray:
            new = np.full((capacity, *shape), fill, dtype)
            if old:
                new[:old] = getattr(self, name)
            return new

        specs: list[tuple[str, type, float | int, tuple[int, ...]]] = [
            ("used", np.bool_, False, ()),
            ("target", np.int64, 2, ()),
            ("max_frames", np.int64, 3, ()),
            ("clock_rate", np.int64, 8000, ()),
            ("rebuilds_lost", np.bool_, False, ()),
            ("ssrc", np.int64, NONE, ()),
            ("next", np.int64, NONE, ()),
            ("last_played", np.int64, NONE, ()),
            ("empty_pops", np.int64, 0, ()),
            ("waiting", np.bool_, False, ()),
            ("queued", np.int64, 0, ()),
            ("first_seq", np.int64, NONE, ()),
            ("probation_seq", np.int64, NONE, ()),
            ("probation_ts", np.int64, 0, ()),
            ("probation_len", np.int64, 0, ()),
            ("probation_row", np.uint8, 0, (self.width,)),
            ("jitter", np.float64, 0.0, ()),
            ("last_arrival", np.float64, np.nan, ()),
            ("last_ts", np.int64, 0, ()),
            ("jitter_ms", np.float64, 0.0, ()),
            *((f, np.int64, 0, ()) for f in _STAT_FIELDS),
            ("ring_seq", np.int64, NONE, (RING,)),
            ("ring_len", np.int64, 0, (RING,)),
            ("ring", np.uint8, 0, (RING, self.width)),
            ("loss_ssrc", np.int64, NONE, ()),
            ("loss_first", np.int64, 0, ()),
            ("loss_highest", np.int64, 0, ()),
            ("loss_received", np.int64, 0, ()),
            ("loss_earlier", np.int64, 0, ()),
            ("packets_in", np.int64, 0, ()),
            ("last_rtp", np.float64, 0.0, ()),
            ("fresh", np.bool_, False, ()),
            ("last_len", np.int64, 0, ()),
            ("last_good", np.uint8, 0, (self.width,)),
            ("_seen", np.int64, 0, ()),  # scratch: which packet of a batch wrote each slot last
            ("deferred", np.int64, 0, ()),  # compiled push: the batch that left it to Python
        ]
        for name, dtype, fill, shape in specs:
            setattr(self, name, column(dtype, fill, *shape))
        self._free.extend(range(capacity - 1, old - 1, -1))
        self.capacity = capacity
        if self.compiled:
            self._table = native.table(
                self, (self.width, RING, MAX_SEQUENCE_JUMP, MAX_DROPOUT, MAX_MISORDER)
            )

    def new_slot(self, target_frames: int = 2, max_frames: int = 3, clock_rate: int = 8000) -> int:
        """An empty buffer's slot (as a new `JitterBuffer(target_frames, max_frames)`)."""
        if target_frames < 1 or max_frames < target_frames:
            raise ValueError("need 1 <= target_frames <= max_frames")
        if not self._free:
            self._grow(max(16, 2 * self.capacity))
        m = self._free.pop()
        self._clear(m)
        self.used[m] = True
        self.target[m], self.max_frames[m], self.clock_rate[m] = (
            target_frames, max_frames, clock_rate,
        )  # fmt: skip
        self.generation += 1
        return m

    def _clear(self, m: int) -> None:
        for name, value in (
            ("ssrc", NONE), ("next", NONE), ("last_played", NONE), ("empty_pops", 0),
            ("waiting", False), ("queued", 0), ("first_seq", NONE), ("probation_seq", NONE),
            ("jitter", 0.0), ("last_arrival", np.nan), ("last_ts", 0), ("jitter_ms", 0.0),
            ("loss_ssrc", NONE), ("loss_first", 0), ("loss_highest", 0), ("loss_received", 0),
            ("loss_earlier", 0), ("packets_in", 0), ("last_rtp", 0.0), ("fresh", False),
            ("rebuilds_lost", False), *((f, 0) for f in _STAT_FIELDS),
        ):  # fmt: skip
            getattr(self, name)[m] = value
        self.ring_seq[m] = NONE
        self._drop_odd(m)

    def _drop_odd(self, m: int) -> None:
        self.keyed.discard(m)
        for key in [key for key in self.odd if key[0] == m]:
            del self.odd[key]
        self._probation_odd.pop(m, None)
        self._last_odd.pop(m, None)

    def attach(self, jitter: JitterBuffer, loss: StreamLoss) -> int:
        """A slot holding `jitter`'s and `loss`' state (a member handed over mid-stream)."""
        m = self.new_slot(jitter.target_frames, jitter.max_frames, jitter.clock_rate)
        self.rebuilds_lost[m] = jitter.rebuilds_lost
        self.ssrc[m] = NONE if jitter._ssrc is None else jitter._ssrc
        self.next[m] = NONE if jitter._next is None else jitter._next
        self.last_played[m] = NONE if jitter._last_played is None else jitter._last_played
        self.empty_pops[m], self.waiting[m] = jitter._empty_pops, jitter._waiting
        for sequence, payload in jitter._frames.items():
            if self.queued[m] == 0:
                self.first_seq[m] = sequence
            self._put(m, sequence, payload)
        if jitter._probation is not None:
            sequence, timestamp, payload = jitter._probation
            self._set_probation(m, sequence, timestamp, payload)
        self.jitter[m] = jitter._jitter
        self.last_arrival[m] = np.nan if jitter._last_arrival is None else jitter._last_arrival
        self.last_ts[m] = jitter._last_timestamp
        for name in (*_STAT_FIELDS, "jitter_ms"):
            getattr(self, name)[m] = getattr(jitter.stats, name)
        self.loss_ssrc[m] = NONE if loss.ssrc is None else loss.ssrc
        self.loss_first[m], self.loss_highest[m] = loss.first, loss.highest
        self.loss_received[m], self.loss_earlier[m] = loss.received, loss.earlier_lost
        return m

    def detach(self, m: int) -> tuple[JitterBuffer, StreamLoss]:
        """Free the slot; its state as a `JitterBuffer` and a `StreamLoss`, to carry on with."""
        jitter = JitterBuffer(int(self.target[m]), int(self.max_frames[m]), int(self.clock_rate[m]))
        jitter.rebuilds_lost = bool(self.rebuilds_lost[m])
        jitter.stats = self.stats(m)
        jitter._ssrc = _or_none(self.ssrc[m])
        jitter._next = _or_none(self.next[m])
        jitter._last_played = _or_none(self.last_played[m])
        jitter._empty_pops, jitter._waiting = int(self.empty_pops[m]), bool(self.waiting[m])
        queued = self._queued(m)
        first = int(self.first_seq[m])
        if first in queued:  # dict order matters only for the first (`_reference`)
            queued.remove(first)
            queued.insert(0, first)
        jitter._frames = {s: self._payload(m, s & _MASK) for s in queued}
        if self.probation_seq[m] != NONE:
            jitter._probation = (
                int(self.probation_seq[m]), int(self.probation_ts[m]), self._probation_payload(m),
            )  # fmt: skip
        jitter._jitter = float(self.jitter[m])
        arrival = float(self.last_arrival[m])
        jitter._last_arrival = None if np.isnan(arrival) else arrival
        jitter._last_timestamp = int(self.last_ts[m])
        loss = StreamLoss(
            _or_none(self.loss_ssrc[m]), int(self.loss_first[m]), int(self.loss_highest[m]),
            int(self.loss_received[m]), int(self.loss_earlier[m]),
        )  # fmt: skip
        self.used[m] = False
        self._drop_odd(m)
        self._free.append(m)
        self.generation += 1
        return jitter, loss

    # --- reading ----------------------------------------------------------------------------

    def stats(self, m: int) -> JitterStats:
        """A copy of the slot's `JitterStats`."""
        stats = JitterStats(**{name: int(getattr(self, name)[m]) for name in _STAT_FIELDS})
        stats.jitter_ms = float(self.jitter_ms[m])
        return stats

    def stream_lost(self, m: int) -> int:
        """`StreamLoss.lost` of the slot."""
        return int(self.loss_earlier[m]) + self._lost_now(m)

    def _lost_now(self, m: int) -> int:
        if self.loss_ssrc[m] == NONE:
            return 0
        return max(0, int(self.loss_highest[m] - self.loss_first[m] + 1 - self.loss_received[m]))

    def last_payload(self, m: int) -> bytes:
        """The payload the slot last played."""
        odd = self._last_odd.get(m)
        if odd is not None and self.last_len[m] > self.width:
            return odd
        return self.last_good[m, : self.last_len[m]].tobytes()

    def take_fresh(self, m: int) -> bytes | None:
        """The payload last played by `pop_batch` if the member's concealer has not had it."""
        if not self.fresh[m]:
            return None
        self.fresh[m] = False
        return self.last_payload(m)

    def _queued(self, m: int) -> list[int]:
        seqs = self.ring_seq[m]
        return sorted(int(s) for s in seqs[seqs != NONE])

    def _payload(self, m: int, r: int) -> bytes:
        length = int(self.ring_len[m, r])
        if length > self.width:
            return self.odd[(m, r)]
        return self.ring[m, r, :length].tobytes()

    def _probation_payload(self, m: int) -> bytes:
        length = int(self.probation_len[m])
        if length > self.width:
            return self._probation_odd[m]
        return self.probation_row[m, :length].tobytes()

    # --- one member at a time: `JitterBuffer`'s and `StreamLoss`' code over the columns ------

    def observe_one(self, m: int, ssrc: int, sequence: int) -> None:
        """`StreamLoss.observe`."""
        if ssrc != self.loss_ssrc[m]:
            self._restart_loss(m, ssrc, sequence)
            return
        delta = (sequence - int(self.loss_highest[m])) & 0xFFFF
        if delta < 0x8000:
            if delta > MAX_DROPOUT:
                self._restart_loss(m, ssrc, sequence)
                return
            self.loss_highest[m] += delta
        elif 0x10000 - delta > MAX_MISORDER:
            self._restart_loss(m, ssrc, sequence)
            return
        self.loss_received[m] += 1

    def _restart_loss(self, m: int, ssrc: int, sequence: int) -> None:
        self.loss_earlier[m] += self._lost_now(m)
        self.loss_ssrc[m], self.loss_first[m], self.loss_highest[m] = ssrc, sequence, sequence
        self.loss_received[m] = 1

    def push_one(
        self, m: int, sequence: int, timestamp: int, ssrc: int, payload: bytes, now: float
    ) -> bool:
        """`JitterBuffer.push_frame`: queue a packet that arrived at `now`; False if dropped."""
        self.received[m] += 1
        if ssrc != self.ssrc[m]:
            if self.ssrc[m] != NONE:
                self._reset(m)
            self.ssrc[m] = ssrc
        reference = self._reference(m)
        if reference is not None and abs(seq_delta(sequence, reference)) > MAX_SEQUENCE_JUMP:
            held = int(self.probation_seq[m])
            if held == NONE or sequence != (held + 1) & 0xFFFF:
                self._set_probation(m, sequence, timestamp, payload)
                self.rejected_jump[m] += 1
                return False
            held_payload = self._probation_payload(m)
            held_ts = int(self.probation_ts[m])
            self._reset(m)
            self._store(m, held, held_ts, held_payload, now)
        self.probation_seq[m] = NONE
        return self._store(m, sequence, timestamp, payload, now)

    def _set_probation(self, m: int, sequence: int, timestamp: int, payload: bytes) -> None:
        self.probation_seq[m], self.probation_ts[m] = sequence, timestamp
        self.probation_len[m] = len(payload)
        if len(payload) > self.width:
            self._probation_odd[m] = payload
        else:
            self.probation_row[m, : len(payload)] = np.frombuffer(payload, np.uint8)

    def _reference(self, m: int) -> int | None:
        if self.next[m] != NONE:
            return int(self.next[m])
        if self.last_played[m] != NONE:
            return int(self.last_played[m])
        if self.queued[m]:
            return int(self.first_seq[m])
        return None

    def _store(self, m: int, sequence: int, timestamp: int, payload: bytes, now: float) -> bool:
        self._update_jitter(m, timestamp, now)
        following = self.next[m]
        if following != NONE:
            late = seq_delta(sequence, int(following)) < 0
        else:
            played = self.last_played[m]
            late = played != NONE and seq_delta(sequence, int(played)) <= 0
        if late:
            self.late[m] += 1
            return False
        if self.ring_seq[m, sequence & _MASK] == sequence:
            self.duplicate[m] += 1
            return False
        if self.queued[m] == 0:
            self.first_seq[m] = sequence
        self._put(m, sequence, payload)
        if following == NONE:
            if self.queued[m] >= self.target[m]:
                self.next[m] = self._oldest(m)
        elif self.queued[m] > self.max_frames[m]:
            self._overflow(m)
        return True

    def _put(self, m: int, sequence: int, payload: bytes) -> None:
        r = sequence & _MASK
        self.ring_seq[m, r] = sequence
        self.ring_len[m, r] = len(payload)
        if len(payload) > self.width:
            self.odd[(m, r)] = payload
        else:
            self.ring[m, r, : len(payload)] = np.frombuffer(payload, np.uint8)
        self.queued[m] += 1

    def _take(self, m: int, sequence: int) -> int:
        """Unqueue `sequence` (queued): its ring row, valid until the next push."""
        r = sequence & _MASK
        self.ring_seq[m, r] = NONE
        self.queued[m] -= 1
        return r

    def _has(self, m: int, sequence: int) -> bool:
        return bool(self.ring_seq[m, sequence & _MASK] == sequence)

    def _oldest(self, m: int) -> int:
        queued = self._queued(m)
        oldest = queued[0]
        for sequence in queued:
            if seq_delta(sequence, oldest) < 0:
                oldest = sequence
        return oldest

    def _overflow(self, m: int) -> None:
        while self.queued[m] > self.max_frames[m]:
            oldest = self._oldest(m)
            self._take(m, oldest)
            self.next[m] = (oldest + 1) & 0xFFFF
            self.waiting[m] = False
            self.overflow[m] += 1

    def _update_jitter(self, m: int, timestamp: int, now: float) -> None:
        last_arrival = float(self.last_arrival[m])
        if not np.isnan(last_arrival):
            clock_rate = int(self.clock_rate[m])
            elapsed = (timestamp - int(self.last_ts[m])) & 0xFFFF_FFFF
            if elapsed >= 0x8000_0000:
                elapsed -= 0x1_0000_0000
            jitter = float(self.jitter[m])
            jitter += (abs((now - last_arrival) * clock_rate - elapsed) - jitter) / 16.0
            self.jitter[m] = jitter
            self.jitter_ms[m] = jitter * 1000.0 / clock_rate
        self.last_arrival[m] = now
        self.last_ts[m] = timestamp

    def _reset(self, m: int) -> None:
        self.reset[m] += 1
        self.ring_seq[m] = NONE
        self.queued[m] = 0
        self.next[m] = self.last_played[m] = NONE
        self.empty_pops[m] = 0
        self.waiting[m] = False
        self.probation_seq[m] = NONE
        self.jitter[m] = 0.0
        self.last_arrival[m] = np.nan
        self.jitter_ms[m] = 0.0

    def upcoming(self, m: int) -> bytes | None:
        """`JitterBuffer.upcoming`."""
        following = int(self.next[m])
        if following == NONE or not self._has(m, following):
            return None
        return self._payload(m, following & _MASK)

    def pop_one(self, m: int) -> int:
        """`JitterBuffer.pop`: the ring row of the payload to play (valid until the next push),
        or -1 when missing or (re)buffering."""
        sequence = int(self.next[m])
        if sequence == NONE:
            return NONE
        row = self._take(m, sequence) if self._has(m, sequence) else NONE
        if row == NONE and self.waiting[m] and self.queued[m]:
            self.waiting[m] = False
            following = (sequence + 1) & 0xFFFF
            if self.rebuilds_lost[m] and self._has(m, following):
                self.next[m] = following
                self.lost[m] += 1
                return NONE
            if self._has(m, following) or self._has(m, (following + 1) & 0xFFFF):
                sequence = following
                row = self._take(m, sequence) if self._has(m, sequence) else NONE
            else:
                sequence = self._oldest(m)
                row = self._take(m, sequence)
        if row != NONE:
            self.next[m] = (sequence + 1) & 0xFFFF
            self.waiting[m] = False
            self.empty_pops[m] = 0
            self.last_played[m] = sequence
            self.played[m] += 1
            return row
        self.lost[m] += 1
        if self.queued[m]:
            self.next[m] = (sequence + 1) & 0xFFFF
            self.empty_pops[m] = 0
            return NONE
        if self.waiting[m]:
            self.next[m] = (sequence + 1) & 0xFFFF
        else:
            self.waiting[m] = True
            self.waited[m] += 1
        self.empty_pops[m] += 1
        if self.empty_pops[m] >= EMPTY_POPS_TO_REBUFFER:
            self.next[m] = NONE
            self.waiting[m] = False
            self.empty_pops[m] = 0
        return NONE

    # --- a whole batch ----------------------------------------------------------------------

    def deliver(
        self,
        rows: np.ndarray,
        lengths: np.ndarray,
        index: np.ndarray,
        fast_type: np.ndarray,
        column: np.ndarray,
        arrivals: np.ndarray,
    ) -> np.ndarray:
        """A receive batch, in arrival order: datagram i is row i of `rows` (`lengths[i]` bytes,
        header first; a row is at least 12 + width wide), routed to demux entry `index[i]`
        (-1: nobody's). Those on the array path, a plain RTP header (no CSRC, extension,
        padding) in their member's payload type (`fast_type[index]`; -1 for a member never on
        it), are pushed to slot `column[index]` as `push_batch` does. Returns the mask of the
        others that are someone's (RTCP, telephone-event, malformed, SRTP), for the caller's
        per-packet path."""
        if self.compiled:
            return self._deliver_compiled(rows, lengths, index, fast_type, column, arrivals)
        theirs = index >= 0
        fast = (
            theirs
            & (lengths >= 12)
            & (rows[:, 0] == 0x80)
            & (rows[:, 1] == fast_type[np.where(theirs, index, 0)])
        )
        chosen = np.flatnonzero(fast)
        if chosen.size:
            # a G.711 packet's header and payload: no need to copy the rest of the buffer rows
            kept = 12 + self.width
            head = rows[chosen] if lengths[chosen].max() > kept else rows[chosen, :kept]
            fields = head[:, 4:12].copy().view(">u4")
            self.push_batch(
                column[index[chosen]],
                (head[:, 2].astype(np.int64) << 8) | head[:, 3],
                fields[:, 0], fields[:, 1], head[:, 12:], lengths[chosen] - 12,
                arrivals[chosen],
            )  # fmt: skip
        return theirs & ~fast

    def _deliver_compiled(
        self,
        rows: np.ndarray,
        lengths: np.ndarray,
        index: np.ndarray,
        fast_type: np.ndarray,
        column: np.ndarray,
        arrivals: np.ndarray,
    ) -> np.ndarray:
        count = len(index)
        rows = np.ascontiguousarray(rows, np.uint8)
        if rows.ndim != 2 or rows.shape[1] < 12 + self.width or len(lengths) != count:
            raise ValueError("deliver: rows must be (datagrams, >= 12 + width) bytes, one each")
        lengths = np.ascontiguousarray(lengths, np.int64)
        index = np.ascontiguousarray(index, np.int64)
        fast_type = np.ascontiguousarray(fast_type, np.int16)
        column = np.ascontiguousarray(column, np.int64)
        arrivals = np.ascontiguousarray(arrivals, np.float64)
        kinds = np.empty(count, np.int8)
        self._token += 1
        left = self._native.deliver(
            self._table, self._token, count, rows, rows.strides[0], lengths, index, fast_type,
            column, arrivals, kinds,
        )  # fmt: skip
        if not left:
            return np.zeros(count, np.bool_)
        for i in np.flatnonzero(kinds == _ONE_BY_ONE).tolist():  # in order, member by member
            row = rows[i]
            self.push_one(
                int(column[index[i]]), int(row[2]) << 8 | int(row[3]),
                int.from_bytes(row[4:8].tobytes(), "big"),
                int.from_bytes(row[8:12].tobytes(), "big"),
                row[12 : int(lengths[i])].tobytes(), float(arrivals[i]),
            )  # fmt: skip
        return kinds == _OTHER

    def push_batch(
        self,
        slots: np.ndarray,
        sequences: np.ndarray,
        timestamps: np.ndarray,
        ssrcs: np.ndarray,
        payloads: np.ndarray,
        lengths: np.ndarray,
        arrivals: np.ndarray,
    ) -> None:
        """Receive a batch of audio packets, in arrival order: per packet `packets_in += 1`,
        `last_rtp = arrival`, `StreamLoss.observe` and `JitterBuffer.push_frame`. `payloads` is
        (packets, >= width) bytes, each row's first `lengths[i]` the payload."""
        slots = np.asarray(slots, np.int64)
        if slots.size == 0:
            return
        sequences = np.asarray(sequences, np.int64)
        timestamps = np.asarray(timestamps, np.int64)
        ssrcs = np.asarray(ssrcs, np.int64)
        lengths = np.asarray(lengths, np.int64)
        arrivals = np.asarray(arrivals, np.float64)
        order = np.arange(slots.size)
        self._seen[slots] = order
        if (self._seen[slots] == order).all():  # one packet per member: one round
            rank, rounds = order, 1
        else:
            rank = _rank_within(slots)
            rounds = int(rank.max()) + 1
        for k in range(rounds):
            chosen = np.flatnonzero(rank == k) if rounds > 1 else order
            self._push_round(
                slots[chosen], sequences[chosen], timestamps[chosen], ssrcs[chosen],
                payloads, chosen, lengths[chosen], arrivals[chosen],
            )  # fmt: skip

    def _push_round(
        self,
        m: np.ndarray,
        seq: np.ndarray,
        ts: np.ndarray,
        ssrc: np.ndarray,
        payloads: np.ndarray,
        rows: np.ndarray,
        lengths: np.ndarray,
        at: np.ndarray,
    ) -> None:
        """One packet per member at most."""
        self.packets_in[m] += 1
        self.last_rtp[m] = at
        self._observe_round(m, seq, ssrc)
        following = self.next[m]
        fast = (
            (following != NONE)
            & (ssrc == self.ssrc[m])
            & (((seq - following + MAX_SEQUENCE_JUMP) & 0xFFFF) <= 2 * MAX_SEQUENCE_JUMP)
            & (lengths <= self.width)
        )
        if not fast.all():
            for i in np.flatnonzero(~fast).tolist():
                length = int(lengths[i])
                self.push_one(
                    int(m[i]), int(seq[i]), int(ts[i]), int(ssrc[i]),
                    payloads[rows[i], :length].tobytes(), float(at[i]),
                )  # fmt: skip
            m, seq, ts, rows, lengths, at, following = (
                m[fast], seq[fast], ts[fast], rows[fast], lengths[fast], at[fast], following[fast],
            )  # fmt: skip
            if m.size == 0:
                return
        self.received[m] += 1
        self.probation_seq[m] = NONE
        # the interarrival jitter, as `JitterBuffer.push_frame` computes it, float for float
        last_arrival = self.last_arrival[m]
        known = ~np.isnan(last_arrival)
        if known.any():
            k = m[known]
            clock_rate = self.clock_rate[k]
            elapsed = (ts[known] - self.last_ts[k]) & 0xFFFF_FFFF
            elapsed = np.where(elapsed >= 0x8000_0000, elapsed - 0x1_0000_0000, elapsed)
            jitter = self.jitter[k]
            jitter = (
                jitter
                + (np.abs((at[known] - last_arrival[known]) * clock_rate - elapsed) - jitter) / 16.0
            )
            self.jitter[k] = jitter
            self.jitter_ms[k] = jitter * 1000.0 / clock_rate
        self.last_arrival[m] = at
        self.last_ts[m] = ts
        late = ((seq - following) & 0xFFFF) >= 0x8000
        r = seq & _MASK
        duplicate = ~late & (self.ring_seq[m, r] == seq)
        if late.any():
            self.late[m[late]] += 1
        if duplicate.any():
            self.duplicate[m[duplicate]] += 1
        kept = ~(late | duplicate)
        m, seq, r, rows, lengths = m[kept], seq[kept], r[kept], rows[kept], lengths[kept]
        self.ring_seq[m, r] = seq
        self.ring_len[m, r] = lengths
        self.ring[m, r] = payloads[rows, : self.width]
        self.queued[m] += 1
        self._overflow_round(m)

    def _observe_round(self, m: np.ndarray, seq: np.ndarray, ssrc: np.ndarray) -> None:
        """`StreamLoss.observe` for one packet each of distinct members."""
        delta = (seq - self.loss_highest[m]) & 0xFFFF
        ahead = delta < 0x8000
        restart = (
            (ssrc != self.loss_ssrc[m])
            | (ahead & (delta > MAX_DROPOUT))
            | (~ahead & (0x10000 - delta > MAX_MISORDER))
        )
        counted = ~restart
        forward = counted & ahead
        self.loss_highest[m[forward]] += delta[forward]
        self.loss_received[m[counted]] += 1
        if restart.any():
            k = m[restart]
            now = self.loss_highest[k] - self.loss_first[k] + 1 - self.loss_received[k]
            self.loss_earlier[k] += np.where(self.loss_ssrc[k] == NONE, 0, np.maximum(now, 0))
            self.loss_ssrc[k] = ssrc[restart]
            self.loss_first[k] = self.loss_highest[k] = seq[restart]
            self.loss_received[k] = 1

    def _overflow_round(self, m: np.ndarray) -> None:
        """`JitterBuffer._overflow` for distinct playing members: drop the oldest queued (all
        queued lie within 2 * MAX_SEQUENCE_JUMP after the next to play)."""
        over = m[self.queued[m] > self.max_frames[m]]
        while over.size:
            seqs = self.ring_seq[over]
            ahead = np.where(seqs == NONE, 0x10000, (seqs - self.next[over, None]) & 0xFFFF)
            r = ahead.argmin(axis=1)
            oldest = seqs[np.arange(over.size), r]
            self.ring_seq[over, r] = NONE
            self.queued[over] -= 1
            self.next[over] = (oldest + 1) & 0xFFFF
            self.waiting[over] = False
            self.overflow[over] += 1
            over = over[self.queued[over] > self.max_frames[over]]

    def pop_batch(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each (distinct) member's frame for this tick: (payload rows, lengths), a length of
        -1 when the frame is missing (conceal it). A row holds `width` bytes; a longer payload
        is `last_payload(slot)`. The concealer's copy is kept for `take_fresh`."""
        if self.compiled:
            return self._pop_compiled(np.ascontiguousarray(slots, np.int64))
        m = np.asarray(slots, np.int64)
        following = self.next[m]
        r = following & _MASK
        hit = (following != NONE) & (self.ring_seq[m, r] == following)
        rows = np.where(hit, r, NONE)
        if hit.any():
            k, played = m[hit], following[hit]
            self.ring_seq[k, r[hit]] = NONE
            self.queued[k] -= 1
            self.next[k] = (played + 1) & 0xFFFF
            self.waiting[k] = False
            self.empty_pops[k] = 0
            self.last_played[k] = played
            self.played[k] += 1
        if not hit.all():  # (buffering: nothing to pop and nothing changes)
            for i in np.flatnonzero(~hit & (following != NONE)).tolist():
                rows[i] = self.pop_one(int(m[i]))
        good = rows != NONE
        lengths = np.where(good, self.ring_len[m, np.maximum(rows, 0)], NONE)
        payloads = self.ring[m, np.maximum(rows, 0)]
        if good.any():
            k = m[good]
            self.last_good[k] = payloads[good]
            self.last_len[k] = lengths[good]
            self.fresh[k] = True
            for i in np.flatnonzero(lengths > self.width).tolist():
                self._last_odd[int(m[i])] = self.odd[(int(m[i]), int(rows[i]))]
        return payloads, lengths


    def pop_decoded(
        self,
        slots: np.ndarray,
        frames: np.ndarray,
        frame_rows: np.ndarray,
        tables: np.ndarray,
        table_of: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """`pop_batch`, and each whole frame (a payload of `frames.shape[1]` bytes, G.711)
        decoded into row `frame_rows[i]` of `frames` through `tables[table_of[i]]` (256 int16
        values each): in the same compiled pass when built. The rest is the caller's."""
        if self.compiled:
            return self._pop_compiled(
                np.ascontiguousarray(slots, np.int64), frames, frame_rows, tables, table_of
            )
        payloads, lengths = self.pop_batch(slots)
        full = np.flatnonzero(lengths == frames.shape[1])
        frames[frame_rows[full]] = tables[table_of[full, None], payloads[full]]
        return payloads, lengths

    def _pop_compiled(
        self,
        m: np.ndarray,
        frames: np.ndarray | None = None,
        frame_rows: np.ndarray | None = None,
        tables: np.ndarray | None = None,
        table_of: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        count = m.size
        rows = np.empty(count, np.int64)
        if self._native.pop_hits(self._table, count, m, rows):
            for i in np.flatnonzero(rows == _MISSING).tolist():
                rows[i] = self.pop_one(int(m[i]))
        lengths = np.empty(count, np.int64)
        payloads = np.empty((count, self.width), np.uint8)
        if frames is None:  # nothing to decode: no frame is -1 bytes long
            frames, samples = _NO_FRAMES, -1
            frame_rows = table_of = np.zeros(count, np.int64)
            tables = _NO_TABLES
        else:
            assert frame_rows is not None and table_of is not None and tables is not None
            samples = frames.shape[1]
        self._native.take_rows(
            self._table, count, m, rows, lengths, payloads, frames, frame_rows, tables,
            table_of, samples,
        )  # fmt: skip
        for i in np.flatnonzero(lengths > self.width).tolist():
            self._last_odd[int(m[i])] = self.odd[(int(m[i]), int(rows[i]))]
        return payloads, lengths


_ONE_BY_ONE, _OTHER = 1, 2  # what `_rtpcols.deliver` says of a datagram it did not push
_MISSING = -2  # `_rtpcols.pop_hits`: playing, and its frame is not next in the ring
_NO_FRAMES = np.zeros((1, 1), np.int16)
_NO_TABLES = np.zeros((1, 256), np.int16)


def _rank_within(slots: np.ndarray) -> np.ndarray:
    """For each entry, how many earlier entries have the same slot."""
    order = np.argsort(slots, kind="stable")
    ordered = slots[order]
    index = np.arange(slots.size)
    starts = np.ones(slots.size, np.bool_)
    starts[1:] = ordered[1:] != ordered[:-1]
    first = np.maximum.accumulate(np.where(starts, index, 0))
    rank = np.empty(slots.size, np.int64)
    rank[order] = index - first
    return rank


def _or_none(value: np.integer) -> int | None:
    return None if value == NONE else int(value)


class ColumnJitter:
    """A member's `JitterBuffer` while its state lives in `JitterColumns` (same methods)."""

    def __init__(
        self, columns: JitterColumns, slot: int, on_played: Callable[[bytes], None] | None = None
    ) -> None:
        self.columns = columns
        self.slot = slot
        self.on_played = on_played
        """Told the payload `pop_batch` last played, before anything may need to conceal it:
        the member's concealer (`Participant.keep_good`)."""

    def keyed(self) -> None:
        """Its member was given a digit: the tick takes it (`JitterColumns.keyed`)."""
        self.columns.keyed.add(self.slot)

    def settle(self) -> None:
        """Hand the concealer what the batch pops played since it last heard (a member whose
        frame is missing conceals from it)."""
        played = self.columns.take_fresh(self.slot)
        if played is not None and self.on_played is not None:
            self.on_played(played)

    target_frames = RowField("target", int, read_only=True)
    max_frames = RowField("max_frames", int, read_only=True)
    clock_rate = RowField("clock_rate", int)
    rebuilds_lost = RowField("rebuilds_lost", bool)

    @property
    def stats(self) -> JitterStats:
        """A copy: read it, do not change it."""
        return self.columns.stats(self.slot)

    jitter_ms = RowField("jitter_ms", float, read_only=True)
    """`stats.jitter_ms` without the copy (a worker's stats report reads it each second)."""
    concealed = RowField("lost", int, read_only=True)
    """`JitterBuffer.concealed`: ticks that found no frame."""
    trimmed = RowField("overflow", int, read_only=True)
    """`JitterBuffer.trimmed`: queued frames dropped to bound the delay."""

    @property
    def playing(self) -> bool:
        return bool(self.columns.next[self.slot] != NONE)

    queued = RowField("queued", int, read_only=True)

    def push(self, packet: RtpPacket, now: float) -> bool:
        return self.push_frame(packet.sequence, packet.timestamp, packet.ssrc, packet.payload, now)

    def push_frame(
        self, sequence: int, timestamp: int, ssrc: int, payload: bytes, now: float
    ) -> bool:
        return self.columns.push_one(self.slot, sequence, timestamp, ssrc, payload, now)

    def upcoming(self) -> bytes | None:
        return self.columns.upcoming(self.slot)

    def pop(self) -> bytes | None:
        """As `JitterBuffer.pop`; the caller keeps its concealer (`Participant.next_payload`)."""
        self.settle()
        columns, m = self.columns, self.slot
        row = columns.pop_one(m)
        return None if row == NONE else columns._payload(m, row)


class ColumnLoss:
    """A member's `StreamLoss` while its state lives in `JitterColumns`."""

    def __init__(self, columns: JitterColumns, slot: int) -> None:
        self.columns = columns
        self.slot = slot

    def observe(self, ssrc: int, sequence: int) -> None:
        self.columns.observe_one(self.slot, ssrc, sequence)

    @property
    def lost(self) -> int:
        return self.columns.stream_lost(self.slot)
