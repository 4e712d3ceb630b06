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
        late the tick runs.

        Woken a tick or more late (a stall), the clock first lets the loop read once: the
        packets of the ticks it missed are waiting on the calls' sockets, and the ticks run
        back to back after, so each must find its frame queued (`MediaEngine.receive`).
        Whether the loop polls its sockets or runs its due timer first after a stall is the
        loop's business; ticked first, the missed ticks concealed and the packets then came
        in over the buffers' bound and were trimmed: two glitches per caller per stall."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TICK_SECONDS
        catching_up = False
        while True:
            delay = deadline - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
                catching_up = False
            if not catching_up and loop.time() - deadline >= TICK_SECONDS:
                catching_up = True
                # the sockets read before the missed ticks: uvloop polls between two runs of
                # its ready callbacks; asyncio's reader callbacks queue behind this task's
                # first wake-up, so they run before its second
                await asyncio.sleep(0)
                await asyncio.sleep(0)
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
