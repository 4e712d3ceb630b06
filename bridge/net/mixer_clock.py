"""The 20 ms media clock: call a step on absolute monotonic deadlines, never drifting.

Shared by the main process (when it mixes the rooms itself) and every media worker.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field

TICK_SECONDS = 0.020
MAX_TICK_BACKLOG = 10  # beyond this many missed ticks, skip ahead instead of bursting


@dataclass
class MixerClock:
    ticks: int = 0
    skipped: int = 0

    async def run(self, step: Callable[[float, float], None]) -> None:
        """Call `step(now, deadline)` every 20 ms until cancelled; `now - deadline` is how
        late the tick runs."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TICK_SECONDS
        while True:
            delay = deadline - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            step(loop.time(), deadline)
            self.ticks += 1
            deadline += TICK_SECONDS
            behind = loop.time() - deadline
            if behind > MAX_TICK_BACKLOG * TICK_SECONDS:
                missed = int(behind / TICK_SECONDS)
                self.skipped += missed
                deadline += missed * TICK_SECONDS


LATENESS_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, float("inf"))
"""Upper bounds (seconds) of the tick lateness histogram, as /metrics exports it."""


@dataclass
class LatenessHistogram:
    """How late ticks ran: a count per bucket of LATENESS_BUCKETS (not cumulative) and a sum.

    Workers fill one per report; the main process adds them up for /metrics."""

    counts: list[int] = field(default_factory=lambda: [0] * len(LATENESS_BUCKETS))
    total_s: float = 0.0

    def observe(self, late_s: float) -> None:
        self.counts[bisect_left(LATENESS_BUCKETS, late_s)] += 1
        self.total_s += late_s

    def add(self, other: LatenessHistogram) -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.total_s += other.total_s

    @property
    def ticks(self) -> int:
        return sum(self.counts)
