"""Loss counted from the whole RTP stream's sequence numbers (bridge/rtp/stream_loss.py)."""

from __future__ import annotations

from bridge.rtp.stream_loss import StreamLoss


def fed(sequences: list[int], ssrc: int = 7) -> StreamLoss:
    loss = StreamLoss()
    for sequence in sequences:
        loss.observe(ssrc, sequence)
    return loss


def test_no_gap_no_loss_across_the_wrap() -> None:
    assert fed([65533, 65534, 65535, 0, 1, 2]).lost == 0


def test_gaps_are_lost_and_reordered_packets_are_not() -> None:
    assert fed([10, 11, 13, 14, 17]).lost == 3
    assert fed([10, 12, 11, 13]).lost == 0
    assert fed([10, 11, 11, 12]).lost == 0  # a duplicate never makes loss negative


def test_late_packet_after_the_gap_was_counted_fills_it() -> None:
    loss = fed([1, 2, 4])
    assert loss.lost == 1
    loss.observe(7, 3)
    assert loss.lost == 0


def test_a_new_ssrc_or_a_big_jump_keeps_earlier_loss_and_counts_afresh() -> None:
    loss = fed([1, 3])
    loss.observe(8, 5000)
    loss.observe(8, 5001)
    assert loss.lost == 1
    loss.observe(8, 20000)  # a jump over MAX_DROPOUT: a restart, not 15,000 lost
    loss.observe(8, 20002)
    assert loss.lost == 2


def test_nothing_received_nothing_lost() -> None:
    assert StreamLoss().lost == 0
