"""/metrics for Prometheus: live gauges read from the bridge at scrape time, counters and the
tick lateness histogram fed as things happen."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from bridge.conference.service import ConferenceService


class BridgeCollector(Collector):
    """Reads the service at scrape time: nothing is counted twice and nothing runs per packet."""

    def __init__(self, service: ConferenceService) -> None:
        self.service = service

    def collect(self):  # type: ignore[no-untyped-def]
        service = self.service
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
            # since start: the calls that ended plus the calls up now
            yield CounterMetricFamily(name, help_text, value=value)


class Metrics:
    def __init__(self, service: ConferenceService) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(BridgeCollector(service))
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total and friends
        self.api_requests = Counter(
            "confbridge_api_requests",
            "HTTP API requests",
            ["method", "status"],
            registry=self.registry,
        )
        self.tick_lateness = Histogram(
            "confbridge_tick_lateness_seconds",
            "How late each mixer tick started against its absolute 20 ms deadline",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1),
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
