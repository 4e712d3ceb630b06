"""A worker's once-a-second figures travel as a `StatsTable` (columns, not an object per
participant): every participant's counters come out of the pipe as they went in."""

from __future__ import annotations

import numpy as np

from bridge.mixing.backend import MediaStats
from bridge.mixing.participant import MediaCounters
from bridge.mixing.workers.backend import Placed
from bridge.mixing.workers.protocol import (
    ParticipantStats,
    StatsTable,
    WorkerStats,
    decode,
    encode,
)
from bridge.net.mixer_clock import LatenessHistogram


def some_stats(count: int) -> list[ParticipantStats]:
    return [
        ParticipantStats(
            f"leg-{i}",
            MediaCounters(*(10 * i + k for k in range(6))),
            i % 3,
            0.25 * i,
            1000.0 + i / 7,
            2 * i,
            i % 5,
        )
        for i in range(count)
    ]


def test_a_table_pickles_to_the_same_figures() -> None:
    stats = some_stats(500)
    report = WorkerStats(5.0, 50, 500, LatenessHistogram(), 1.5, StatsTable.of(stats))
    (back,) = decode(encode([report]))
    table = back.participants_stats
    assert [table.row(i) for i in range(len(stats))] == stats
    # a few arrays, not a thousand objects: nothing for the other end's collector to scan
    assert table.counts.shape == (500, 9) and table.last_rtp.dtype == np.float64


def test_no_participants_make_an_empty_table() -> None:
    table = StatsTable.of([])
    assert table.call_keys == () and table.counts.shape == (0, 9)


def test_a_placed_leg_reads_its_row_of_the_last_report() -> None:
    first = MediaStats(MediaCounters(packets_in=1), 0, 0.0)
    placed = Placed(0, "room", False, first, 0.0)
    assert placed.stats == first  # until its worker reports
    stats = some_stats(3)
    placed.table, placed.row = StatsTable.of(stats), 2
    row = stats[2]
    assert placed.stats == MediaStats(
        row.counters, row.lost, row.jitter_ms, row.concealed, row.trimmed
    )
    assert (placed.stats.concealed, placed.stats.trimmed) == (4, 2)
