"""`JitterColumns` against `JitterBuffer` and `StreamLoss`: the same pops, stats and loss.

Random streams (loss, reordering, duplicates, bursts, late packets, sequence wrap, SSRC
changes, jumps with and without a confirming packet, silence long enough to rebuffer, odd
payload sizes, several packets of one member in one batch) go one by one through a
`JitterBuffer` and a `StreamLoss` per member, and a tick's worth at a time through the columns
(`push_batch`, `pop_batch`, and now and then the per-member views, or a detach and attach).
Every pop (payload bytes or None, tick by tick), every stat and every loss count must match.
"""

from __future__ import annotations

import numpy as np
import pytest

from bridge.mixing import columnar
from bridge.rtp import native
from bridge.rtp.jitter import JitterBuffer
from bridge.rtp.jitter_columns import ColumnJitter, ColumnLoss, JitterColumns
from bridge.rtp.stream_loss import StreamLoss
from tests.unit.test_room_shared_mix import Wire, make_member

WIDTH = 160
SIZES = [(1, 1), (1, 3), (2, 3), (2, 2), (3, 10), (1, 2)]


class Stream:
    """One caller's packets, tick by tick: what a phone on a bad network delivers."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.sequence = int(rng.choice([rng.integers(0, 65536), 65530, 0]))
        self.timestamp = int(rng.integers(0, 2**32))
        self.ssrc = int(rng.integers(0, 2**32))
        self.held: list[tuple[int, int, int, bytes, float]] = []  # delayed: (due tick, ...)
        self.silent_until = -1
        self.loss = float(rng.choice([0.0, 0.02, 0.1, 0.3]))

    def packet(self, tick: int) -> tuple[int, int, int, bytes]:
        rng = self.rng
        size = WIDTH
        odd = rng.random()
        if odd < 0.03:
            size = int(rng.choice([0, 80, 200, 320]))
        payload = rng.integers(0, 256, size, np.uint8).tobytes()
        packet = (self.sequence, self.timestamp, self.ssrc, payload)
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.timestamp = (self.timestamp + 160) & 0xFFFF_FFFF
        return packet

    def arrivals(self, tick: int) -> list[tuple[int, int, int, bytes, float]]:
        """The packets that arrive during `tick`, in order, with their arrival times."""
        rng = self.rng
        now = tick * 0.02
        out: list[tuple[int, int, int, bytes, float]] = []
        event = rng.random()
        if tick < self.silent_until:
            pass
        elif event < 0.01:  # silence suppression or a pause long enough to rebuffer
            self.silent_until = tick + int(rng.integers(2, 12))
            self.sequence = (self.sequence + int(rng.integers(1, 3))) & 0xFFFF
        elif event < 0.02:
            self.ssrc = int(rng.integers(0, 2**32))
            self.sequence = int(rng.integers(0, 65536))
        elif event < 0.03:  # a jump the stream carries on from
            self.sequence = (self.sequence + int(rng.choice([150, 3000, 40000, -500]))) & 0xFFFF
        elif event < 0.04:  # one stray packet far away, then the stream as before
            sequence = (self.sequence + int(rng.integers(200, 60000))) & 0xFFFF
            out.append((sequence, self.timestamp, self.ssrc, bytes(WIDTH), now))
        elif event < 0.06:  # a burst: the next few packets held and delivered together
            for _ in range(int(rng.integers(2, 6))):
                self.held.append((tick + int(rng.integers(1, 5)), *self.packet(tick), 0.0))
        if tick >= self.silent_until:
            sent = self.packet(tick)
            fate = rng.random()
            if fate < self.loss:
                pass
            elif fate < self.loss + 0.05:  # late by a few ticks
                self.held.append((tick + int(rng.integers(1, 8)), *sent, 0.0))
            else:
                out.append((*sent, now + float(rng.random()) * 0.004))
                if rng.random() < 0.03:  # duplicated
                    out.append((*sent, now + 0.005))
        due = [h for h in self.held if h[0] <= tick]
        self.held = [h for h in self.held if h[0] > tick]
        for h in due:
            out.append((*h[1:5], now + 0.001 + float(rng.random()) * 0.01))
        if len(out) > 1 and rng.random() < 0.3:  # reordered within the batch
            i = int(rng.integers(0, len(out) - 1))
            out[i], out[i + 1] = out[i + 1], out[i]
        out.sort(key=lambda p: p[4])
        return out


def datagram(sequence: int, timestamp: int, ssrc: int, payload: bytes, pt: int = 0) -> bytes:
    return (
        bytes([0x80, pt])
        + sequence.to_bytes(2, "big")
        + timestamp.to_bytes(4, "big")
        + (ssrc.to_bytes(4, "big") + payload)
    )


def deliver(columns: JitterColumns, packets: list[tuple[int, tuple]]) -> np.ndarray:
    """A receive batch as the shared port hands it over: (slot, (sequence, timestamp, ssrc,
    payload, arrival)) each, routed to demux entry i, all on the array path's payload type."""
    rows = np.zeros((len(packets), 12 + 400), np.uint8)
    for i, (_, (sequence, timestamp, ssrc, payload, _)) in enumerate(packets):
        data = datagram(sequence, timestamp, ssrc, payload)
        rows[i, : len(data)] = np.frombuffer(data, np.uint8)
    return columns.deliver(
        rows,
        np.array([12 + len(p[3]) for _, p in packets]),
        np.arange(len(packets)),
        np.zeros(len(packets), np.int16),
        np.array([slot for slot, _ in packets]),
        np.array([p[4] for _, p in packets]),
    )


def _run(seed: int, members: int, ticks: int, compiled: bool) -> None:
    rng = np.random.default_rng(seed)
    columns = JitterColumns(capacity=4, width=WIDTH, compiled=compiled)  # grows as they join
    streams, buffers, losses, packets_in, slots = [], [], [], [], []
    for _ in range(members):
        target, most = SIZES[int(rng.integers(0, len(SIZES)))]
        streams.append(Stream(rng))
        buffers.append(JitterBuffer(target, most))
        losses.append(StreamLoss())
        packets_in.append(0)
        slots.append(columns.new_slot(target, most))
    opus = int(rng.integers(0, members))
    buffers[opus].rebuilds_lost = True  # the per-member path ports it too
    columns.rebuilds_lost[slots[opus]] = True
    for tick in range(ticks):
        batch: list[tuple[float, int, tuple[int, int, int, bytes, float]]] = []
        for k, stream in enumerate(streams):
            batch.extend((p[4], k, p) for p in stream.arrivals(tick))
        batch.sort(key=lambda item: item[0])
        for _, k, (sequence, timestamp, ssrc, payload, at) in batch:
            packets_in[k] += 1
            losses[k].observe(ssrc, sequence)
            buffers[k].push_frame(sequence, timestamp, ssrc, payload, at)
        if batch:
            deliver(columns, [(slots[k], p) for _, k, p in batch])
        expected = [buffer.pop() for buffer in buffers]
        one_by_one = set(rng.choice(members, int(rng.integers(0, 3))).tolist())
        batched = [k for k in range(members) if k not in one_by_one]
        got: dict[int, bytes | None] = {
            k: ColumnJitter(columns, slots[k]).pop() for k in one_by_one
        }
        payloads, lengths = columns.pop_batch(np.array([slots[k] for k in batched], np.int64))
        for i, k in enumerate(batched):
            length = int(lengths[i])
            if length < 0:
                got[k] = None
            elif length > WIDTH:
                got[k] = columns.last_payload(slots[k])
            else:
                got[k] = payloads[i, :length].tobytes()
                assert columns.take_fresh(slots[k]) == got[k]
        for k in range(members):
            assert got[k] == expected[k], (seed, tick, k)
        for k in range(members):
            m = slots[k]
            assert columns.stats(m) == buffers[k].stats, (seed, tick, k)
            assert ColumnLoss(columns, m).lost == losses[k].lost, (seed, tick, k)
            assert int(columns.packets_in[m]) == packets_in[k]
            view, buffer = ColumnJitter(columns, m), buffers[k]
            assert view.upcoming() == buffer.upcoming()
            assert view.queued == buffer.queued
            assert (view.concealed, view.trimmed) == (buffer.concealed, buffer.trimmed)
        if rng.random() < 0.05:  # a member leaves the columns and comes back mid-stream
            k = int(rng.integers(0, members))
            jitter, loss = columns.detach(slots[k])
            assert loss == losses[k]
            assert jitter.stats == buffers[k].stats
            assert jitter._frames == buffers[k]._frames
            slots[k] = columns.attach(jitter, loss)
            columns.packets_in[slots[k]] = packets_in[k]


@pytest.mark.parametrize("compiled", [False, True], ids=["numpy", "compiled"])
@pytest.mark.parametrize("seed", range(12))
def test_columns_pop_and_count_what_jitter_buffers_do(seed: int, compiled: bool) -> None:
    _run(
        seed, members=int(np.random.default_rng(seed).integers(1, 40)), ticks=400, compiled=compiled
    )


def test_the_set_up_built_the_compiled_path() -> None:
    """`scripts/setup.sh` (pip's build of setup.py) compiles `_rtpcols.c`; without it the
    bridge runs numpy's path, slower: the suite must know which one it tested."""
    assert native.compiled is not None
    assert JitterColumns().compiled


@pytest.mark.parametrize("compiled", [False, True], ids=["numpy", "compiled"])
def test_what_is_not_on_the_array_path_goes_back_to_the_caller(compiled: bool) -> None:
    """Nobody's datagrams are dropped, another payload type (telephone-event), a short one and
    an RTP header with a CSRC go back; the member's plain audio is pushed."""
    columns = JitterColumns(compiled=compiled)
    slot = columns.new_slot(1, 3)
    audio = datagram(5, 800, 9, bytes(160))
    sent = [audio, datagram(6, 960, 9, bytes(4), pt=101), audio[:8], b"\x81" + audio[1:], audio]
    rows = np.zeros((len(sent), 200), np.uint8)
    for i, data in enumerate(sent):
        rows[i, : len(data)] = np.frombuffer(data, np.uint8)
    others = columns.deliver(
        rows, np.array([len(d) for d in sent]), np.array([0, 0, 0, 0, -1]),
        np.array([0], np.int16), np.array([slot]), np.zeros(len(sent)),
    )  # fmt: skip
    assert others.tolist() == [False, True, True, True, False]
    assert int(columns.packets_in[slot]) == 1 and columns.stats(slot).received == 1


def test_the_random_streams_reach_every_rule() -> None:
    """The streams above really rebuffer, overflow, wait, reset, reject jumps, see late and
    duplicated packets and lose some (else the equivalence would prove little)."""
    rng = np.random.default_rng(99)
    totals: dict[str, int] = {"rebuffered": 0}
    for _ in range(20):
        stream, buffer = Stream(rng), JitterBuffer(2, 3)
        for tick in range(400):
            for sequence, timestamp, ssrc, payload, at in stream.arrivals(tick):
                buffer.push_frame(sequence, timestamp, ssrc, payload, at)
            playing = buffer.playing
            buffer.pop()
            if playing and not buffer.playing:  # five empty pops: buffering again
                totals["rebuffered"] += 1
        for name in ("overflow", "waited", "reset", "rejected_jump", "late", "duplicate", "lost"):
            totals[name] = totals.get(name, 0) + getattr(buffer.stats, name)
    assert all(count > 0 for count in totals.values()), totals


def test_several_packets_of_a_member_in_one_batch_go_in_order() -> None:
    columns = JitterColumns()
    slot = columns.new_slot(1, 3)
    reference = JitterBuffer(1, 3)
    rows = np.arange(5 * WIDTH, dtype=np.uint8).reshape(5, WIDTH) % 251
    sequences = np.array([10, 11, 13, 12, 11])
    for i, sequence in enumerate(sequences.tolist()):
        reference.push_frame(sequence, sequence * 160, 7, rows[i].tobytes(), i * 0.001)
    columns.push_batch(
        np.full(5, slot), sequences, sequences * 160, np.full(5, 7), rows, np.full(5, WIDTH),
        np.arange(5) * 0.001,
    )  # fmt: skip
    assert columns.stats(slot) == reference.stats
    for _ in range(5):
        payloads, lengths = columns.pop_batch(np.array([slot]))
        popped = reference.pop()
        assert (None if lengths[0] < 0 else payloads[0].tobytes()) == popped


def test_a_slot_given_back_is_empty_when_reused() -> None:
    columns = JitterColumns(capacity=1)
    first = columns.new_slot(1, 3)
    columns.push_one(first, 5, 800, 1, b"x" * 200, 0.0)
    columns.detach(first)
    again = columns.new_slot(1, 3)
    assert again == first
    assert columns.stats(again).received == 0
    assert not ColumnJitter(columns, again).playing
    assert columns.odd == {}
    with pytest.raises(ValueError):
        columns.new_slot(3, 2)


def test_a_participant_attached_twice_keeps_its_slot() -> None:
    columns, other = JitterColumns(), JitterColumns()
    member = make_member(0, "PCMU", None, Wire())
    member.jitter.push_frame(7, 0, 1, bytes(160), 0.0)
    slot = columnar.attach(columns, member)
    assert columnar.attach(columns, member) == slot
    columnar.attach(other, member)  # moved: its state goes along
    assert member.jitter.stats.received == 1 and member.jitter.queued == 1
    assert not columns.used[slot]
    columnar.detach(member)
    assert isinstance(member.jitter, JitterBuffer) and member.jitter.queued == 1


def test_the_compiled_push_refuses_rows_narrower_than_a_frame() -> None:
    """The C code copies a whole row's frame: rows too narrow for it are refused, not read
    past their end."""
    columns = JitterColumns(compiled=True)
    slot = columns.new_slot(1, 3)
    narrow = np.zeros((1, 12 + 100), np.uint8)
    with pytest.raises(ValueError, match="12 \\+ width"):
        columns.deliver(
            narrow, np.array([112]), np.array([0]), np.array([0], np.int16), np.array([slot]),
            np.zeros(1),
        )  # fmt: skip
