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

from bridge.control_port import BridgeStats, ConferenceControl, WorkerView
from bridge.net.mixer_clock import LATENESS_BUCKETS


class BridgeCollector(Collector):
    """Reads the bridge's stats at scrape time: nothing is counted twice and nothing runs per
    packet."""

    def __init__(self, bridge: ConferenceControl) -> None:
        self.bridge = bridge

    def collect(self):  # type: ignore[no-untyped-def]
        stats = self.bridge.stats()
        yield GaugeMetricFamily("confbridge_calls_active", "Calls up", value=stats.calls_active)
        yield GaugeMetricFamily(
            "confbridge_rooms_active", "Rooms with people", value=stats.rooms_active
        )
        yield GaugeMetricFamily(
            "confbridge_participants", "Participants in rooms", value=stats.participants
        )
        for name, help_text, value in (
            ("confbridge_rtp_packets_in", "RTP packets received", stats.packets_in),
            ("confbridge_rtp_packets_out", "RTP packets sent", stats.packets_out),
            ("confbridge_rtp_packets_lost", "RTP packets lost on the way in (sequence gaps)",
             stats.packets_lost),
            ("confbridge_rtp_frames_concealed",
             "Ticks a jitter buffer had no frame for (late or lost: concealed)",
             stats.frames_concealed),
            ("confbridge_rtp_frames_trimmed",
             "Frames jitter buffers dropped to bound the delay (a burst came)",
             stats.frames_trimmed),
            ("confbridge_rtp_unmatched", "Datagrams on shared RTP ports from no call (dropped)",
             stats.rtp_unmatched),
            ("confbridge_srtp_rejected", "SRTP packets dropped: forged, replayed or plain RTP",
             stats.srtp_rejected),
        ):
            # since start: the calls that ended plus the calls up now (workers' figures are
            # at most a second old)
            yield CounterMetricFamily(name, help_text, value=value)
        for name, help_text, value in (
            ("confbridge_code_wrong", "Room codes entered wrong or timed out", stats.wrong_codes),
            ("confbridge_code_lockouts", "Sources locked out for guessing room codes",
             stats.code_lockouts),
            ("confbridge_code_alarms", "Rooms past the wrong-code alarm threshold",
             stats.code_alarms),
            ("confbridge_code_lockout_refusals", "Calls refused (403): source locked out",
             stats.refused_locked),
            ("confbridge_sip_flood_limited", "New-dialog requests over their source's limit "
             "(503 or dropped)", stats.flood_limited),
            ("confbridge_sip_flood_sources", "Times a source went over its new-dialog limit",
             stats.flood_sources),
        ):  # fmt: skip
            yield CounterMetricFamily(name, help_text, value=value)
        yield _histogram(
            "confbridge_tick_lateness_seconds",
            "How late each mixer tick started against its absolute 20 ms deadline "
            "(the workers' ticks when media workers run)",
            stats,
        )
        if stats.workers is not None:
            yield from _worker_metrics(stats.workers)


def _histogram(name: str, help_text: str, stats: BridgeStats) -> HistogramMetricFamily:
    cumulative, buckets = 0, []
    for bound, count in zip(LATENESS_BUCKETS, stats.lateness_counts, strict=True):
        cumulative += count
        buckets.append(("+Inf" if math.isinf(bound) else repr(bound), cumulative))
    return HistogramMetricFamily(name, help_text, buckets=buckets, sum_value=stats.lateness_total_s)


def _worker_metrics(workers: tuple[WorkerView, ...]):  # type: ignore[no-untyped-def]
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
    for worker in workers:
        label = [str(worker.index)]
        rooms_on.add_metric(label, worker.rooms)
        people_on.add_metric(label, worker.participants)
        pids.add_metric(label, worker.pid)
        cpu.add_metric(label, worker.cpu_seconds)
        restarts.add_metric(label, worker.restarts)
    yield GaugeMetricFamily(
        "confbridge_media_workers", "Media worker processes", value=len(workers)
    )
    yield from (rooms_on, people_on, pids, cpu, restarts)


class Metrics:
    def __init__(self, bridge: ConferenceControl) -> None:
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
