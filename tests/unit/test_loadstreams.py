"""The load generator's array accounting against the per-packet `RtpStats` it replaced: the
same loss, reordering, jitter and lateness figures for random streams (loss, reordering,
duplicates, sequence wrap, delay spikes), packets of many calls interleaved in batches, by
numpy's path and the compiled one (`bridge/tools/_loadcols.c`)."""

from __future__ import annotations

import numpy as np
import pytest

from bridge.tools.loadnative import compiled
from bridge.tools.loadrtp import RtpStats
from bridge.tools.loadstreams import ReceiveStats


def streams(rng: np.random.Generator, calls: int) -> list[tuple[int, int, int, float]]:
    """(call, seq, ts, arrival) in arrival order."""
    packets = []
    for call in range(calls):
        seq0, ts0 = int(rng.integers(0, 65536)), int(rng.integers(0, 2**32))
        for k in range(int(rng.integers(20, 300))):
            if rng.random() < 0.05:
                continue  # lost
            arrival = 0.02 * k + float(rng.exponential(0.003))
            if rng.random() < 0.02:
                arrival += 0.08  # a spike: late
            copies = 2 if rng.random() < 0.02 else 1  # duplicated
            for _ in range(copies):
                packets.append((call, (seq0 + k) & 0xFFFF, (ts0 + 160 * k) & 0xFFFF_FFFF, arrival))
    packets.sort(key=lambda p: p[3])
    return packets


@pytest.mark.parametrize(
    "native",
    [
        False,
        pytest.param(True, marks=pytest.mark.skipif(not compiled, reason="_loadcols not built")),
    ],
)
@pytest.mark.parametrize("seed", range(6))
def test_array_stats_match_the_per_packet_stats(seed: int, native: bool) -> None:
    rng = np.random.default_rng(seed)
    calls = int(rng.integers(1, 40))
    packets = streams(rng, calls)
    reference = [RtpStats() for _ in range(calls)]
    for call, seq, ts, arrival in packets:
        reference[call].receive(seq, ts, arrival)
    stats = ReceiveStats(calls, native=native)
    position = 0
    while position < len(packets):  # batches of random size, as recvmmsg returns them
        size = int(rng.integers(1, 200))
        batch = np.array(packets[position : position + size], dtype=np.float64)
        position += size
        stats.receive(
            batch[:, 0].astype(np.int64),
            batch[:, 1].astype(np.uint16),
            batch[:, 2].astype(np.uint32),
            batch[:, 3],
        )
    for call, expected in enumerate(reference):
        assert stats.received[call] == expected.received
        assert stats.expected(call) == expected.expected
        assert stats.lost(call) == expected.lost
        assert stats.reordered[call] == expected.reordered
        assert stats.late[call] == expected.late
        assert stats.jitter[call] == pytest.approx(expected.jitter, rel=1e-9, abs=1e-12)
        assert stats.max_jitter[call] == pytest.approx(expected.max_jitter, rel=1e-9, abs=1e-12)
    assert sum(s.late for s in reference) > 0 and sum(s.reordered for s in reference) > 0
    received, expected_counts, late = stats.counts()
    assert received.tolist() == [s.received for s in reference]
    assert expected_counts.tolist() == [s.expected for s in reference]
    assert late.tolist() == [s.late for s in reference]


def test_calls_get_addresses_of_their_own_only_for_a_shared_port_bridge() -> None:
    """The generator binds 127.0.0.1 unless the bridge tells calls apart by source address."""
    from bridge.tools.loadstreams import Streams
    from bridge.tools.loadtest import LoadOptions

    assert not LoadOptions().spec().per_call_addresses
    assert LoadOptions(per_call_addresses=True).spec().per_call_addresses
    shared = LoadOptions(bridge_env=["CONFBRIDGE_MEDIA_WORKERS=2", "CONFBRIDGE_RTP_SHARED_PORT=1"])
    assert shared.spec().per_call_addresses
    off = LoadOptions(bridge_env=["CONFBRIDGE_RTP_SHARED_PORT=false"])
    assert not off.spec().per_call_addresses
    streams = Streams(4, "PCMU")
    try:
        assert streams.io.sock.getsockname()[0] == "127.0.0.1" and not streams.per_call_address
    finally:
        streams.io.close()


def test_a_markers_burst_is_added_to_its_tone_not_sent_instead() -> None:
    """2 s of a marker's stream, one burst in it, through a real socket: the burst is there and
    the tone runs on under it, so nothing shows 13 Hz away (the next room's tone at 100 rooms;
    a 60 ms gap in the tone put -48 dBFS there and the FFT check called it a leak)."""
    import socket

    from bridge.media.g711 import ulaw_decode
    from bridge.tools.loadplan import BURST_HZ, amplitude, burst_samples, tone_frames
    from bridge.tools.loadrtp import BURST_DB, frame_levels, levels_at
    from bridge.tools.loadstreams import Streams

    tone, level = 528, amplitude(2)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.settimeout(2.0)
    streams = Streams(1, "PCMU")
    try:
        row = streams.add(tone_frames(tone, level, "PCMU"), burst_samples(level))
        streams.start(row, peer.getsockname(), first=0.0, first_burst=1.0)
        frames = []
        for k in range(100):
            streams.send_due(np.array([row]), due=k * 0.02 + 0.001)
            frames.append(ulaw_decode(peer.recv(2048)[12:]))
    finally:
        streams.close()
        peer.close()
    audio = np.concatenate(frames)
    bursts = np.flatnonzero(frame_levels(np.stack(frames), BURST_HZ) > BURST_DB)
    assert bursts.tolist() == [50, 51, 52]  # frame k leaves at 0.02 k: the burst from 1.0 s
    own, burst, beside = levels_at(audio, np.array([tone, BURST_HZ, tone - 13])).tolist()
    assert own > -25.0 and burst > -45.0
    assert beside < -60.0
