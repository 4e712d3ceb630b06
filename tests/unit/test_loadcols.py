"""The load generator's compiled per-packet path (`bridge/tools/_loadcols.c`) against numpy's,
its reference: random streams of many calls (loss, reordering, duplicates, sequence and
timestamp wrap, several packets of a call in one batch, stray and odd datagrams, bursts on and
off across digests, packets exactly on the analysis window's edges) give the same statistics
to the bit (and the same as the per-packet `RtpStats`), the same burst onsets and the same
kept audio; a send batch's packets are the same bytes."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from bridge.media.g711 import CODECS, FRAME_SAMPLES
from bridge.net.mmsg import SO_TIMESTAMPNS
from bridge.tools import loadnative
from bridge.tools.loadplan import BURST_HZ, RATE, amplitude, burst_samples, tone_frames
from bridge.tools.loadrtp import BURST_DB, RtpStats, frame_levels
from bridge.tools.loadstreams import PACKET_BYTES, ReceiveStats, Streams

PORT0 = 30000
STRANGER = 29999  # a bridge port no call was answered from


def test_the_set_up_built_the_compiled_path() -> None:
    """`scripts/setup.sh` (pip's build of setup.py) compiles `_loadcols.c`; without it the
    comparisons below fail (`loadnative.module()` raises) rather than being skipped, and this
    test says why: the suite must test both paths."""
    assert loadnative.compiled is not None
    streams = Streams(1, "PCMU")
    streams.close()
    assert streams.native


def frame(rng: np.random.Generator, codec: str, tone: float, burst_db: float | None) -> bytes:
    """A 20 ms frame of a tone, with the burst's frequency at `burst_db` if given."""
    t = np.arange(FRAME_SAMPLES) / RATE + rng.random()
    samples = 3000.0 * np.sin(2 * np.pi * tone * t)
    if burst_db is not None:
        samples += 32768.0 * 10 ** (burst_db / 20) * np.sin(2 * np.pi * BURST_HZ * t)
    return CODECS[codec].encode(np.round(samples).astype(np.int16))


def call_packets(rng: np.random.Generator, codec: str, call: int) -> list[tuple]:
    """(arrival, call, packet bytes) of one call: runs of burst frames (some too weak to count)
    between runs of plain ones; sequence numbers and timestamps that may wrap."""
    seq0 = int(rng.choice([rng.integers(0, 65536), 65530]))
    ts0 = int(rng.choice([rng.integers(0, 2**32), 2**32 - 500]))
    tone, packets, k = float(rng.integers(200, 1200)), [], 0
    while k < int(rng.integers(40, 160)):
        on = rng.random() < 0.4
        for _ in range(int(rng.integers(1, 6))):
            db = float(rng.uniform(-30, -10) if on else rng.uniform(-70, -50))
            payload = frame(rng, codec, tone, db if on or rng.random() < 0.3 else None)
            header = bytes([0x80, CODECS[codec].payload_type])
            header += ((seq0 + k) & 0xFFFF).to_bytes(2, "big")
            header += ((ts0 + FRAME_SAMPLES * k) & 0xFFFF_FFFF).to_bytes(4, "big") + b"\0\0\0\1"
            arrival = 100.0 + 0.02 * k + float(rng.exponential(0.004))
            if rng.random() < 0.03:
                arrival += 0.07  # late, and so reordered
            if rng.random() < 0.04:
                k += 1
                continue  # lost
            for _ in range(2 if rng.random() < 0.03 else 1):  # duplicated
                packets.append((arrival, call, header + payload))
            k += 1
    return packets


def stamped(at: float) -> float:
    """`at` to the microsecond, as the receiver reads a kernel time stamp (seconds and
    nanoseconds) of it: `Feed` gives that time stamp, so arrivals are exactly these."""
    seconds = int(at)
    return seconds + round((at - seconds) * 1e6) * 1000 * 1e-9


def traffic(rng: np.random.Generator, codec: str, calls: int) -> list[tuple]:
    """Every call's packets in arrival order, with stray and odd datagrams among them."""
    packets = [p for call in range(calls) for p in call_packets(rng, codec, call)]
    for _ in range(int(rng.integers(1, 20))):
        at = float(rng.uniform(100.0, 101.0))
        call = int(rng.integers(0, calls))
        packets.append((at, -1, packets[0][2]))  # from a port of no call
        packets.append((at, call, packets[0][2][:50]))  # short
        packets.append((at, call, b"\x90" + packets[0][2][1:]))  # an extension header
    packets = [(stamped(at), call, data) for at, call, data in packets]
    return sorted(packets, key=lambda p: p[0])


def plain(data: bytes) -> bool:
    return len(data) == PACKET_BYTES and data[0] == 0x80


class Feed:
    """Stands for `recvmmsg`: a batch of `packets` into each `receive`'s buffer, as the kernel
    fills it (bytes, lengths, source ports, time stamps)."""

    def __init__(self, streams: Streams, packets: list[tuple], sizes: list[int]) -> None:
        self.streams, self.packets, self.sizes, self.at = streams, packets, sizes, 0
        streams.io.receive = self  # type: ignore[method-assign]

    def __call__(self) -> int:
        if not self.sizes:
            return 0
        batch = self.packets[self.at : self.at + self.sizes.pop(0)]
        self.at += len(batch)
        rx = self.streams.io.rx
        for i, (at, call, data) in enumerate(batch):
            rx.data[i, : len(data)] = np.frombuffer(data, np.uint8)
            rx.headers["len"][i] = len(data)
            rx.names["port"][i] = STRANGER if call < 0 else PORT0 + call
            seconds = int(at)
            control = rx.controls[i : i + 1]
            control["sec"], control["nsec"] = seconds, round((at - seconds) * 1e9)
            control["len"], control["level"] = 32, socket.SOL_SOCKET
            control["type"] = SO_TIMESTAMPNS
            rx.headers["controllen"][i] = 32
        return len(batch)


def streams_of(calls: int, codec: str, native: bool) -> Streams:
    streams = Streams(calls, codec, native=native)
    streams._wall_to_monotonic = 0.0
    for row in range(calls):
        streams.add(tone_frames(440, amplitude(2), codec))
        streams.start(row, ("127.0.0.1", PORT0 + row), first=0.0, first_burst=float("inf"))
    return streams


def run(packets: list[tuple], codec: str, calls: int, native: bool, seed: int) -> Streams:
    """`packets` through `receive` in batches of random sizes and `digest` now and then."""
    rng = np.random.default_rng(seed)
    streams = streams_of(calls, codec, native)
    inside = [at for at, call, data in packets if call >= 0 and plain(data)]
    streams.window = (inside[len(inside) // 3], inside[2 * len(inside) // 3])
    sizes = []
    while sum(sizes) < len(packets):
        sizes.append(int(rng.choice([1, 7, 60, 150, 512])))
    feed = Feed(streams, packets, sizes)
    while feed.sizes:
        for _ in range(int(rng.integers(1, 6))):
            streams.receive()
        streams.digest()
    streams.digest()
    streams.close()
    return streams


def test_the_frames_are_clear_of_the_threshold() -> None:
    """No frame of these streams is within 1 dB of BURST_DB (where a sum's order could tell),
    and there are frames on both sides."""
    rng = np.random.default_rng(0)
    frames = [
        np.frombuffer(data[12:], np.uint8)
        for _, call, data in traffic(rng, "PCMU", 6)
        if call >= 0 and plain(data)
    ]
    levels = frame_levels(CODECS["PCMU"].decode(np.concatenate(frames)).reshape(-1, 160), BURST_HZ)
    assert np.abs(levels - BURST_DB).min() > 1.0
    assert (levels > BURST_DB).sum() > 20 and (levels < BURST_DB).sum() > 20


@pytest.mark.parametrize("codec", ["PCMU", "PCMA"])
def test_a_burst_frame_is_one_that_frame_levels_puts_over_the_threshold(codec: str) -> None:
    """Frames whose level at BURST_HZ lies within 6 dB of BURST_DB, each a call's first: the
    compiled digest's onsets are the frames `frame_levels` puts over it (none lies within
    1e-6 dB of it, where the order of a sum could tell)."""
    rng = np.random.default_rng(11)
    payloads = [frame(rng, codec, 440.0, float(rng.uniform(-46, -34))) for _ in range(2000)]
    codes = np.frombuffer(b"".join(payloads), np.uint8).reshape(-1, FRAME_SAMPLES)
    levels = frame_levels(CODECS[codec].decode(codes.tobytes()).reshape(-1, 160), BURST_HZ)
    assert np.abs(levels - BURST_DB).min() > 1e-6
    streams = Streams(len(payloads), codec, native=True)
    streams.close()
    streams.onsets = {row: [] for row in range(len(payloads))}
    stash = streams._stash
    stash.reserve(len(payloads))
    stash.rows[: len(payloads)] = np.arange(len(payloads))
    stash.codes[: len(payloads)] = codes
    stash.count = len(payloads)
    streams.digest()
    onsets = [row for row, found in streams.onsets.items() if found]
    assert onsets == np.flatnonzero(levels > BURST_DB).tolist()
    assert 500 < len(onsets) < 1500


@pytest.mark.parametrize("codec", ["PCMU", "PCMA"])
@pytest.mark.parametrize("seed", range(5))
def test_receive_and_digest_give_what_numpy_gives(seed: int, codec: str) -> None:
    rng = np.random.default_rng(seed)
    calls = int(rng.integers(2, 12))
    packets = traffic(rng, codec, calls)
    numpy_path = run(packets, codec, calls, native=False, seed=seed)
    compiled = run(packets, codec, calls, native=True, seed=seed)
    assert np.array_equal(compiled.stats._ints, numpy_path.stats._ints)
    assert np.array_equal(compiled.stats._floats, numpy_path.stats._floats)
    assert compiled.unknown == numpy_path.unknown > 0
    assert np.array_equal(compiled.odd, numpy_path.odd) and compiled.odd.sum() > 0
    assert np.array_equal(compiled.burst_on, numpy_path.burst_on)
    assert compiled.onsets == numpy_path.onsets
    assert sum(map(len, compiled.onsets.values())) > calls
    start, end = compiled.window
    for row in range(calls):
        audio = compiled.audio(row)
        assert np.array_equal(audio, numpy_path.audio(row))
        wanted = [at for at, call, data in packets if call == row and plain(data)]
        assert audio.size == FRAME_SAMPLES * sum(start <= at < end for at in wanted)
    assert sum(at == start for at, call, data in packets if call >= 0 and plain(data)) > 0


@pytest.mark.parametrize("seed", range(3))
def test_compiled_stats_are_the_per_packet_stats_to_the_bit(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    calls = int(rng.integers(2, 12))
    packets = traffic(rng, "PCMU", calls)
    compiled = run(packets, "PCMU", calls, native=True, seed=seed)
    reference = [RtpStats() for _ in range(calls)]
    for at, call, data in packets:
        if call >= 0 and plain(data):
            seq, ts = int.from_bytes(data[2:4], "big"), int.from_bytes(data[4:8], "big")
            reference[call].receive(seq, ts, at)
    stats = compiled.stats
    for call, expected in enumerate(reference):
        assert stats.received[call] == expected.received
        assert (stats.expected(call), stats.lost(call)) == (expected.expected, expected.lost)
        assert stats.reordered[call] == expected.reordered
        assert stats.late[call] == expected.late
        assert stats.jitter[call] == expected.jitter
        assert stats.max_jitter[call] == expected.max_jitter
    assert sum(s.reordered for s in reference) > 0 and sum(s.late for s in reference) > 0
    assert any(s.cycles for s in reference)


def test_receive_stats_of_one_call_many_times_in_a_batch() -> None:
    """A batch that is one call's whole stream: numpy's path takes it in as many turns."""
    rng = np.random.default_rng(7)
    seq = (65500 + np.arange(300) + (rng.random(300) < 0.1) * 3) & 0xFFFF
    ts = (2**32 - 1000 + 160 * np.arange(300)) & 0xFFFF_FFFF
    now = 0.02 * np.arange(300) + rng.exponential(0.01, 300)
    rows = np.zeros(300, np.int64)
    both = [ReceiveStats(1, native=False), ReceiveStats(1, native=True)]
    for stats in both:
        stats.receive(rows, seq.astype(np.uint16), ts.astype(np.uint32), now)
    assert np.array_equal(both[0]._ints, both[1]._ints)
    assert np.array_equal(both[0]._floats, both[1]._floats)
    assert both[1].cycles[0] == 0x10000 and both[1].reordered[0] > 0


def test_the_compiled_calls_refuse_what_would_go_out_of_bounds() -> None:
    stats = ReceiveStats(4, native=True)
    rows, seq, ts, now = np.array([4]), np.zeros(1, np.int64), np.zeros(1, np.int64), np.zeros(1)
    cols = loadnative.module()
    with pytest.raises(IndexError):
        cols.stats(1, rows, seq, ts, now, *stats.columns())
    with pytest.raises(TypeError):
        cols.stats(1, rows.astype(np.int32), seq, ts, now, *stats.columns())
    with pytest.raises(ValueError):
        cols.stats(2, np.array([0]), seq, ts, now, *stats.columns())
    assert stats.received.sum() == 0


def senders(native: bool) -> tuple[Streams, list[tuple[bytes, list[int], list[int]]]]:
    """Streams of calls of different loop lengths, markers among them, sequence numbers and
    timestamps about to wrap; what each send would put on the wire is recorded instead."""
    streams = Streams(40, "PCMA", native=native)
    rng = np.random.default_rng(3)
    streams.seq[:] = 65535 - np.arange(40)
    streams.ts[:] = 2**32 - 160 * np.arange(40)
    streams.ssrc[:] = rng.integers(1, 2**32, 40, dtype=np.uint64)
    level = amplitude(2)
    for row in range(40):
        frames = tone_frames(300 + 10 * row, level, "PCMA")[: 1 + row % 7]
        streams.add(frames, burst_samples(level) if row % 6 == 0 else None)
        streams.start(row, (f"127.0.0.{row + 1}", 4000 + row), first=0.001 * row, first_burst=0.5)
    sent: list[tuple[bytes, list[int], list[int]]] = []

    def record(count: int, hosts: np.ndarray, ports: np.ndarray, *rest: object) -> int:
        sent.append((streams.io.tx.data[:count, :PACKET_BYTES].tobytes(), list(hosts), list(ports)))
        return count

    streams.io.send = record  # type: ignore[method-assign]
    return streams, sent


def test_a_send_batch_is_the_same_bytes_from_both_paths() -> None:
    results = []
    for native in (False, True):
        streams, sent = senders(native)
        for k in range(330):  # bursts at 0.5 s and 2.5 s, over 3.3 s
            rows = np.arange(k % 2, 40, 2) if k % 3 else np.arange(40)
            streams.send_due(rows, due=0.01 * k)
        streams.close()
        markers = [len(m.sent_at) for m in streams.markers.values()]
        state = [streams.seq, streams.ts, streams.position, streams.sent, streams.next_time]
        results.append((sent, markers, state))
    (sent, markers, state), (sent_c, markers_c, state_c) = results
    assert len(sent) > 100 and sent == sent_c
    assert markers == markers_c == [2] * len(markers)
    for numpy_column, compiled_column in zip(state, state_c, strict=True):
        assert np.array_equal(numpy_column, compiled_column)


def test_numpy_s_path_can_be_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONFBRIDGE_NATIVE_LOAD", "0")
    assert not loadnative.wanted() and not ReceiveStats(1).native
    monkeypatch.setenv("CONFBRIDGE_NATIVE_LOAD", "1")
    assert loadnative.wanted() and ReceiveStats(1).native
