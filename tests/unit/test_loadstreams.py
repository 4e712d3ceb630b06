"""The load generator's array accounting against the per-packet `RtpStats` it replaced: the
same loss, reordering, jitter and lateness figures for random streams (loss, reordering,
duplicates, sequence wrap, delay spikes), packets of many calls interleaved in batches."""

from __future__ import annotations

import numpy as np
import pytest

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


@pytest.mark.parametrize("seed", range(6))
def test_array_stats_match_the_per_packet_stats(seed: int) -> None:
    rng = np.random.default_rng(seed)
    calls = int(rng.integers(1, 40))
    packets = streams(rng, calls)
    reference = [RtpStats() for _ in range(calls)]
    for call, seq, ts, arrival in packets:
        reference[call].receive(seq, ts, arrival)
    stats = ReceiveStats(calls)
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
