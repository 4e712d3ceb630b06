"""The bridge's side of a load test: its /metrics scraped over time, and its CPU from /proc.

Scrapes are kept whole and compared pairwise, so every figure is a delta over a known window
(the histogram is cumulative since the bridge started; the ramp must not count as load).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

TICKS = "confbridge_tick_lateness_seconds"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Scrape:
    """One /metrics read: its samples by name (histogram buckets by their `le`)."""

    at: float  # monotonic
    values: dict[str, float] = field(default_factory=dict)
    buckets: dict[float, float] = field(default_factory=dict)  # tick lateness, cumulative
    took_ms: float = 0.0  # how long the bridge took to answer: its loop was busy that long

    def get(self, name: str) -> float:
        return self.values.get(name, 0.0)


def parse_metrics(text: str, at: float, took_ms: float = 0.0) -> Scrape:
    values: dict[str, float] = {}
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"{TICKS}_bucket":
                buckets[float(sample.labels["le"])] = sample.value
            elif not sample.labels:
                values[sample.name] = sample.value
    return Scrape(at, values, buckets, took_ms)


async def scrape(client: httpx.AsyncClient, url: str) -> Scrape | None:
    """Read /metrics; None when the bridge does not answer (a loaded bridge may be slow)."""
    began = time.monotonic()
    try:
        response = await client.get(url, timeout=5.0)
        response.raise_for_status()
    except httpx.HTTPError:
        return None
    now = time.monotonic()
    return parse_metrics(response.text, now, (now - began) * 1000.0)


@dataclass(frozen=True)
class Lateness:
    """Mixer tick lateness over a window, from histogram deltas (milliseconds)."""

    ticks: int
    p50_ms: float | None
    p99_ms: float | None
    max_bucket_ms: float | None  # upper bound of the highest bucket hit; inf: over 100 ms
    over_5ms: float  # fraction of ticks later than 5 ms

    def as_dict(self) -> dict[str, float | int | None]:
        top = self.max_bucket_ms
        return {
            "ticks": self.ticks,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "max_bucket_ms": None if top is None or math.isinf(top) else top,
            "max_over_100ms": top is not None and math.isinf(top),
            "over_5ms_fraction": self.over_5ms,
        }


def lateness(before: Scrape, after: Scrape) -> Lateness:
    bounds = sorted(after.buckets)
    counts = [after.buckets[b] - before.buckets.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0.0
    if total <= 0:
        return Lateness(0, None, None, None, 0.0)
    at_5ms = next((c for b, c in zip(bounds, counts, strict=True) if b >= 0.005), total)
    highest = next(b for b, c, below in _steps(bounds, counts) if c > below)
    return Lateness(
        ticks=int(total),
        p50_ms=_quantile(bounds, counts, 0.50),
        p99_ms=_quantile(bounds, counts, 0.99),
        max_bucket_ms=highest * 1000.0,
        over_5ms=(total - at_5ms) / total,
    )


def _steps(bounds: list[float], counts: list[float]) -> list[tuple[float, float, float]]:
    """(bound, cumulative count, cumulative count of the bucket below), highest first."""
    below = [0.0, *counts[:-1]]
    return list(zip(bounds, counts, below, strict=True))[::-1]


def _quantile(bounds: list[float], counts: list[float], q: float) -> float:
    """Prometheus' histogram_quantile: linear inside the bucket, in ms; the +Inf bucket
    reports the highest finite bound (the true value is only known to be above it)."""
    rank = q * counts[-1]
    lower, below = 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if math.isinf(bound):
                return lower * 1000.0
            inside = count - below
            share = (rank - below) / inside if inside else 0.0
            return (lower + (bound - lower) * share) * 1000.0
        lower, below = bound, count
    return lower * 1000.0


def process_cpu(pid: int | None) -> float | None:
    """User + system CPU seconds of a live process (the bridge) and its children (its media
    workers), None when unknown."""
    if pid is None:
        return None
    own = _stat(Path(f"/proc/{pid}/stat"))
    if own is None:
        return None
    total = own[1]
    for path in Path("/proc").glob("[0-9]*/stat"):
        child = _stat(path)
        if child is not None and child[0] == pid:
            total += child[1]
    return total


def _stat(path: Path) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) from a /proc/<pid>/stat file; None once the process is gone."""
    try:
        stat = path.read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
