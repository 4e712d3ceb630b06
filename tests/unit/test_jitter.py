"""Jitter buffer: buffering, reordering, loss, late/duplicate, overflow, wrap, resets, jitter."""

from __future__ import annotations

import random

import pytest

from bridge.rtp.jitter import JitterBuffer, JitterStats
from bridge.rtp.packet import RtpPacket

FRAME = 0.020


def packet(sequence: int, ssrc: int = 1, timestamp: int | None = None) -> RtpPacket:
    sequence &= 0xFFFF
    if timestamp is None:
        timestamp = sequence * 160
    return RtpPacket(0, sequence, timestamp & 0xFFFF_FFFF, ssrc, payload(sequence))


def payload(sequence: int) -> bytes:
    return sequence.to_bytes(2, "big") * 80


def pops(buffer: JitterBuffer, count: int) -> list[int | None]:
    """Pop `count` ticks; frames shown by their sequence number."""
    result: list[int | None] = []
    for _ in range(count):
        frame = buffer.pop()
        result.append(None if frame is None else int.from_bytes(frame[:2], "big"))
    return result


def test_buffers_until_target_then_plays_in_order() -> None:
    buffer = JitterBuffer()
    assert buffer.push(packet(0), 0.0)
    assert pops(buffer, 1) == [None]
    assert not buffer.playing
    assert buffer.push(packet(1), FRAME)
    assert buffer.playing
    assert pops(buffer, 2) == [0, 1]
    assert buffer.stats == JitterStats(received=2, played=2)


def test_target_frames_one_plays_at_once() -> None:
    buffer = JitterBuffer(target_frames=1, max_frames=1)
    buffer.push(packet(7), 0.0)
    assert pops(buffer, 1) == [7]


def test_reordered_packets_come_out_in_order() -> None:
    buffer = JitterBuffer(target_frames=2, max_frames=4)
    buffer.push(packet(11), 0.0)
    buffer.push(packet(10), 0.001)
    buffer.push(packet(13), 0.002)
    buffer.push(packet(12), 0.003)
    assert pops(buffer, 4) == [10, 11, 12, 13]
    assert buffer.stats.late == 0


def test_missing_frame_pops_none_and_counts_lost() -> None:
    buffer = JitterBuffer()
    for sequence in (0, 1, 3):
        buffer.push(packet(sequence), 0.0)
    assert pops(buffer, 4) == [0, 1, None, 3]
    assert (buffer.stats.played, buffer.stats.lost) == (3, 1)


def test_late_and_duplicate_packets_are_dropped() -> None:
    buffer = JitterBuffer()
    buffer.push(packet(10), 0.0)
    buffer.push(packet(11), 0.0)
    assert pops(buffer, 1) == [10]
    assert not buffer.push(packet(10), 0.0)  # already played
    assert not buffer.push(packet(9), 0.0)  # older still
    assert buffer.push(packet(12), 0.0)
    assert not buffer.push(packet(12), 0.0)
    assert not buffer.push(packet(11), 0.0)  # queued already: a duplicate
    assert pops(buffer, 2) == [11, 12]
    assert (buffer.stats.late, buffer.stats.duplicate) == (2, 2)


def test_packet_for_a_concealed_slot_is_late() -> None:
    buffer = JitterBuffer()
    for sequence in (0, 1, 3):
        buffer.push(packet(sequence), 0.0)
    assert pops(buffer, 3) == [0, 1, None]
    assert not buffer.push(packet(2), 0.0)
    assert buffer.stats.late == 1


def test_overflow_drops_oldest_to_bound_latency() -> None:
    buffer = JitterBuffer(target_frames=2, max_frames=3)
    for sequence in range(5):
        buffer.push(packet(sequence), 0.0)
    assert buffer.queued == 3
    assert buffer.stats.overflow == 2
    assert pops(buffer, 3) == [2, 3, 4]


def test_overflow_skips_a_gap() -> None:
    buffer = JitterBuffer(target_frames=2, max_frames=3)
    buffer.push(packet(0), 0.0)
    buffer.push(packet(1), 0.0)
    assert pops(buffer, 2) == [0, 1]
    for sequence in (50, 51, 52, 53):
        buffer.push(packet(sequence), 0.0)
    assert pops(buffer, 3) == [51, 52, 53]


def test_sequence_wrap() -> None:
    buffer = JitterBuffer(target_frames=2, max_frames=4)
    for sequence in (65534, 65535, 1, 0, 2):
        buffer.push(packet(sequence), 0.0)
        if sequence == 65535:
            assert pops(buffer, 1) == [65534]
    assert pops(buffer, 4) == [65535, 0, 1, 2]
    assert buffer.stats.lost == 0 and buffer.stats.late == 0


def test_ssrc_change_resets_to_the_new_stream() -> None:
    buffer = JitterBuffer()
    for sequence in (100, 101, 102):
        buffer.push(packet(sequence, ssrc=1), 0.0)
    assert pops(buffer, 1) == [100]
    assert buffer.push(packet(5, ssrc=2), 0.0)
    assert pops(buffer, 1) == [None]  # buffering the new stream
    buffer.push(packet(6, ssrc=2), 0.0)
    assert pops(buffer, 2) == [5, 6]
    assert buffer.stats.reset == 1


def test_big_sequence_jump_resets_once_confirmed() -> None:
    buffer = JitterBuffer()
    for sequence in (0, 1):
        buffer.push(packet(sequence), 0.0)
    assert pops(buffer, 1) == [0]
    assert not buffer.push(packet(5000), 0.0)  # one stray packet is held back...
    assert buffer.stats.reset == 0
    assert buffer.push(packet(2), 0.0)
    assert pops(buffer, 2) == [1, 2]
    assert not buffer.push(packet(9000), 0.0)
    assert buffer.push(packet(9001), 0.0)  # ...two in a row are a new stream
    assert buffer.stats.reset == 1
    assert pops(buffer, 2) == [9000, 9001]
    assert buffer.stats.rejected_jump == 2


def test_jump_backwards_also_resets() -> None:
    buffer = JitterBuffer()
    for sequence in (1000, 1001):
        buffer.push(packet(sequence), 0.0)
    assert not buffer.push(packet(10), 0.0)
    assert buffer.push(packet(11), 0.0)
    assert pops(buffer, 2) == [10, 11]
    assert buffer.stats.reset == 1


def test_rebuffers_after_a_long_gap_and_keeps_the_sequence() -> None:
    buffer = JitterBuffer()
    for sequence in (0, 1):
        buffer.push(packet(sequence), 0.0)
    assert pops(buffer, 2) == [0, 1]
    assert pops(buffer, 5) == [None] * 5  # silence suppression or a dead link
    assert not buffer.playing
    assert pops(buffer, 3) == [None] * 3  # buffering: not counted as lost
    assert buffer.stats.lost == 5
    # the talkspurt carries on from the last played sequence: not late
    assert buffer.push(packet(2, timestamp=8000), 1.0)
    assert pops(buffer, 1) == [None]
    assert buffer.push(packet(3, timestamp=8160), 1.02)
    assert pops(buffer, 2) == [2, 3]
    assert not buffer.push(packet(1), 1.03)
    assert buffer.stats.reset == 0


def test_gap_with_frames_queued_does_not_rebuffer() -> None:
    buffer = JitterBuffer(target_frames=2, max_frames=3)
    for sequence in (0, 1, 9):
        buffer.push(packet(sequence), 0.0)
    assert pops(buffer, 10) == [0, 1, *[None] * 7, 9]
    assert buffer.stats.lost == 7


def test_payloads_of_other_sizes_pass_through() -> None:
    buffer = JitterBuffer(target_frames=1, max_frames=2)
    buffer.push(RtpPacket(0, 1, 0, 1, b"\xff" * 80), 0.0)
    assert buffer.pop() == b"\xff" * 80


def test_jitter_is_zero_for_perfect_pacing_across_timestamp_wrap() -> None:
    buffer = JitterBuffer(target_frames=2, max_frames=3)
    for i in range(10):
        # 1/64 s apart and 125 timestamp units apart: exact in binary floating point
        buffer.push(packet(i, timestamp=2**32 - 500 + 125 * i), i * 0.015625)
        buffer.pop()
    assert buffer.stats.jitter_ms == 0.0


def test_jitter_estimate_follows_rfc3550() -> None:
    buffer = JitterBuffer()
    # arrival times in exact binary fractions: 0, 250 and 375 timestamp units
    buffer.push(packet(0, timestamp=0), 0.0)
    buffer.push(packet(1, timestamp=160), 0.03125)
    assert buffer.stats.jitter_ms == 0.703125  # |250-160| / 16 = 5.625 units
    buffer.push(packet(2, timestamp=320), 0.046875)
    assert buffer.stats.jitter_ms == 0.9326171875  # 5.625 + (|125-160| - 5.625) / 16


def test_invalid_sizes_are_rejected() -> None:
    with pytest.raises(ValueError):
        JitterBuffer(target_frames=3, max_frames=2)
    with pytest.raises(ValueError):
        JitterBuffer(target_frames=0)


def drive(buffer: JitterBuffer, arrivals: list[float], ticks: int) -> list[int | None]:
    """Ticks every 20 ms from t=0: push the packets that arrived by then (packet i at
    `arrivals[i]` seconds), then pop; frames shown by their sequence number."""
    played: list[int | None] = []
    order = sorted(range(len(arrivals)), key=arrivals.__getitem__)
    next_packet = 0
    for tick in range(ticks):
        now = tick * FRAME
        while next_packet < len(order) and arrivals[order[next_packet]] <= now:
            sequence = order[next_packet]
            buffer.push(packet(sequence), arrivals[sequence])
            next_packet += 1
        played += pops(buffer, 1)
    return played


def test_a_stream_played_close_to_arrival_waits_once_and_then_rides_out_jitter() -> None:
    # A burst of four (a sender catching up) overflows the buffer: it trims a frame, so
    # each later packet arrives 1-3 ms before its tick. A few ms of jitter then made about
    # every fourth packet miss its tick, concealed and then dropped as late.
    rng = random.Random(5)
    arrivals = [-0.001] * 4 + [j * FRAME - 0.023 + rng.uniform(0, 0.004) for j in range(4, 520)]
    buffer = JitterBuffer(target_frames=2, max_frames=3)
    played = drive(buffer, arrivals, 500)
    stats = buffer.stats
    assert stats.overflow == 1 and stats.late == 0
    assert stats.lost == stats.waited == 1  # the first late packet: waited for, not dropped
    first = played.index(None)
    assert played[: first + 1] == [*range(1, first + 1), None]
    assert played[first + 1 :] == list(range(first + 1, 500))  # the late one, a tick late


def test_a_late_packet_is_played_a_tick_late_instead_of_dropped() -> None:
    buffer = JitterBuffer(target_frames=2, max_frames=3)
    buffer.push(packet(0), 0.0)
    buffer.push(packet(1), 0.0)
    assert pops(buffer, 3) == [0, 1, None]  # 2 is late: concealed, waited for
    assert buffer.push(packet(2), 0.05)
    buffer.push(packet(3), 0.06)
    assert pops(buffer, 2) == [2, 3]
    assert (buffer.stats.lost, buffer.stats.waited, buffer.stats.late) == (1, 1, 0)


def test_a_frame_lost_with_nothing_queued_costs_one_frame_and_no_delay() -> None:
    buffer = JitterBuffer(target_frames=2, max_frames=3)
    buffer.push(packet(0), 0.0)
    buffer.push(packet(1), 0.0)
    assert pops(buffer, 3) == [0, 1, None]  # waiting for 2, which was lost
    buffer.push(packet(3), 0.06)
    assert pops(buffer, 1) == [3]  # 3 came instead: plays at once, on its own tick
    buffer.push(packet(4), 0.08)
    assert pops(buffer, 1) == [4]
    assert not buffer.push(packet(2), 0.09)  # too late now
    assert (buffer.stats.lost, buffer.stats.waited) == (1, 1)


def test_two_lost_in_a_row_keep_the_timeline_and_the_next_packet_for_fec() -> None:
    # One frame of margin (each packet comes a tick before it plays); 3 and 4 are lost. The
    # tick of 3 waits (concealed); when 5 comes, 4 pops as lost with 5 as upcoming (Opus
    # rebuilds 4 from 5's FEC) and 5 plays on its own tick: the margin stays, so the next lost
    # frame (7) has its successor queued too. Playing 5 at once left no margin for that.
    buffer = JitterBuffer(target_frames=2, max_frames=3)
    buffer.push(packet(0), 0.0)
    played: list[int | None] = []
    upcoming: list[int | None] = []
    for tick in range(1, 10):
        if tick not in (3, 4, 7):
            buffer.push(packet(tick), tick * FRAME)
        played += pops(buffer, 1)
        queued = buffer.upcoming() if played[-1] is None else None
        upcoming.append(None if queued is None else int.from_bytes(queued[:2], "big"))
    assert played == [0, 1, 2, None, None, 5, 6, None, 8]
    assert upcoming == [None, None, None, None, 5, None, None, 8, None]
    assert (buffer.stats.lost, buffer.stats.waited) == (3, 1)


def test_waiting_adds_one_frame_of_delay_at_most() -> None:
    buffer = JitterBuffer(target_frames=2, max_frames=4)
    buffer.push(packet(0), 0.0)
    buffer.push(packet(1), 0.0)
    assert pops(buffer, 2) == [0, 1]
    assert pops(buffer, 3) == [None] * 3  # a stall: waits for 2 once, then skips 2 and 3
    for sequence in range(2, 7):  # the stalled packets come in one burst
        buffer.push(packet(sequence), 0.1)
    assert buffer.stats.late == 2
    assert pops(buffer, 3) == [4, 5, 6]  # skipping would have played 5 now: one frame later


def random_stream(rng: random.Random, length: int) -> list[tuple[int, int, int, float]]:
    """(sequence, timestamp, ssrc, arrival) with reordering, loss, duplicates, sequence jumps,
    SSRC changes and timestamp wrap, starting near the sequence wrap."""
    sequence, timestamp, ssrc, now = 65500, 0xFFFF_F000, 7, 0.0
    stream = []
    for _ in range(length):
        roll = rng.random()
        if roll < 0.01:
            ssrc += 1
        elif roll < 0.03:
            sequence += rng.choice((-1, 1)) * rng.randint(90, 3000)
        elif roll < 0.08:
            sequence += rng.randint(-4, 4)  # reordered, duplicated or skipped
        sequence += 1
        timestamp += 160
        now += rng.uniform(0.0, 0.04)
        stream.append((sequence & 0xFFFF, timestamp & 0xFFFF_FFFF, ssrc, now))
    return stream


@pytest.mark.parametrize("seed", range(8))
def test_push_frame_fast_path_matches_the_general_path(seed: int) -> None:
    """`push_frame` inlines the common case; the general `_push` (the original code path)
    must decide every packet and pop the same, and estimate exactly the same jitter."""
    rng = random.Random(seed)
    fast, general = JitterBuffer(2, 4), JitterBuffer(2, 4)
    for sequence, timestamp, ssrc, now in random_stream(rng, 3000):
        payload = sequence.to_bytes(2, "big")
        assert fast.push_frame(sequence, timestamp, ssrc, payload, now) == general._push(
            sequence, timestamp, ssrc, payload, now
        )
        for _ in range(rng.choice((0, 1, 1, 1, 2))):
            assert fast.pop() == general.pop()
        assert fast.stats == general.stats
        assert vars(fast) == {**vars(general), "stats": fast.stats}
    assert fast.stats.played > 1000 and fast.stats.rejected_jump and fast.stats.reset


def test_push_is_push_frame_of_the_packet_fields() -> None:
    by_packet, by_fields = JitterBuffer(), JitterBuffer()
    for sequence in (5, 6, 4, 6, 300, 301, 302):
        p = packet(sequence)
        assert by_packet.push(p, sequence * FRAME) == by_fields.push_frame(
            p.sequence, p.timestamp, p.ssrc, p.payload, sequence * FRAME
        )
    assert vars(by_packet) == {**vars(by_fields), "stats": by_packet.stats}
    assert by_packet.stats == by_fields.stats and by_packet.stats.reset == 1
