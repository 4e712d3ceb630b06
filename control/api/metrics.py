"""/metrics for Prometheus: live gauges read from the bridge at scrape time, counters and the
tick lateness histogram fed as things happen."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Counter, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

from bridge.net.mixer_clock import LATENESS_BUCKETS, LatenessHistogram
from bridge.server import BridgeServer
from bridge.workers.pool import WorkerPool


class BridgeCollector(Collector):
    """Reads the bridge at scrape time: nothing is counted twice and nothing runs per packet."""

    def __init__(self, bridge: BridgeServer) -> None:
        self.bridge = bridge

    def collect(self):  # type: ignore[no-untyped-def]
        service = self.bridge.service
        assert service is not None
        rooms = [r for r in service.rooms.values() if r.participants]
        people = [p for r in service.rooms.values() for p in r.participants]
        yield GaugeMetricFamily("confbridge_calls_active", "Calls up", value=len(service.media))
        yield GaugeMetricFamily("confbridge_rooms_active", "Rooms with people", value=len(rooms))
        yield GaugeMetricFamily(
            "confbridge_participants", "Participants in rooms", value=len(people)
        )
        ended = service.ended_totals
        for name, help_text, value in (
            ("confbridge_rtp_packets_in", "RTP packets received",
             ended["packets_in"] + sum(p.counters.packets_in for p in people)),
            ("confbridge_rtp_packets_out", "RTP packets sent",
             ended["packets_out"] + sum(p.counters.packets_out for p in people)),
            ("confbridge_rtp_packets_lost", "RTP frames lost (concealed)",
             ended["lost"] + sum(p.jitter.stats.lost for p in people)),
        ):
            # since start: the calls that ended plus the calls up now (workers' figures are
            # at most a second old)
            yield CounterMetricFamily(name, help_text, value=value)
        workers = self.bridge.workers
        lateness = workers.lateness if workers is not None else self.bridge.lateness
        yield _histogram(
            "confbridge_tick_lateness_seconds",
            "How late each mixer tick started against its absolute 20 ms deadline "
            "(the workers' ticks when media workers run)",
            lateness,
        )
        if workers is not None:
            yield from _worker_metrics(workers, service.room_workers)


def _histogram(name: str, help_text: str, lateness: LatenessHistogram) -> HistogramMetricFamily:
    cumulative, buckets = 0, []
    for bound, count in zip(LATENESS_BUCKETS, lateness.counts, strict=True):
        cumulative += count
        buckets.append(("+Inf" if math.isinf(bound) else repr(bound), cumulative))
    return HistogramMetricFamily(name, help_text, buckets=buckets, sum_value=lateness.total_s)


def _worker_metrics(workers: WorkerPool, room_workers: dict[str, int]):  # type: ignore[no-untyped-def]
    """Per worker: where the rooms are, its process, its CPU and how often it was restarted."""
    rooms_on = GaugeMetricFamily(
        "confbridge_worker_rooms", "Rooms mixed by each media worker", labels=["worker"]
    )
    people_on = GaugeMetricFamily(
        "confbridge_worker_participants", "Participants on each media worker", labels=["worker"]
    )
    pids = GaugeMetricFamily(
        "confbridge_worker_pid", "Process id of each media worker", labels=["worker"]
    )
    cpu = CounterMetricFamily(
        "confbridge_worker_cpu_seconds",
        "CPU seconds of each worker slot (all its processes, as last reported)",
        labels=["worker"],
    )
    restarts = CounterMetricFamily(
        "confbridge_worker_restarts", "Workers restarted after dying", labels=["worker"]
    )
    for handle in workers.workers:
        label = [str(handle.index)]
        placed = sum(1 for worker in room_workers.values() if worker == handle.index)
        rooms_on.add_metric(label, placed)
        people_on.add_metric(label, handle.participants)
        pids.add_metric(label, handle.process.pid)
        cpu.add_metric(label, handle.cpu_seconds)
        restarts.add_metric(label, handle.restarts)
    yield GaugeMetricFamily(
        "confbridge_media_workers", "Media worker processes", value=len(workers.workers)
    )
    yield from (rooms_on, people_on, pids, cpu, restarts)


class Metrics:
    def __init__(self, bridge: BridgeServer) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(BridgeCollector(bridge))
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total and friends
        self.api_requests = Counter(
            "confbridge_api_requests",
            "HTTP API requests",
            ["method", "status"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
