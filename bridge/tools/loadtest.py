"""The load test coordinator: start (or find) a bridge, run load processes, measure, report.

Participants are simulated by `--processes` load processes (`bridge.tools.loadgen`), each a
round-robin share of the plan, so a room's members may sit in different processes; they all
read CLOCK_MONOTONIC, so a burst sent in one is timed against its arrival in another. This
process only coordinates: it scrapes the bridge's /metrics each second, reads the bridge's CPU
from /proc, draws the progress bar, and turns what the load processes report into a summary
table, a JSON file and plots.

    .venv/bin/python scripts/loadtest.py --rooms 2 --per-room 5 --talkers 2 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bridge.tools.loadmetrics import Scrape, process_cpu, scrape
from bridge.tools.loadplan import PlanSpec
from bridge.tools.loadreport import RunRecord, print_summary, summarise, write_outputs

SETTLE_SECONDS = 20.0  # after the last INVITE, how long calls may take to be answered
ANALYSIS_SECONDS = 2.0  # the FFT window at the end of the measurement
SCRAPE_SECONDS = 1.0
COUNTERS_SETTLE_SECONDS = 1.5  # media workers report their RTP counters once a second
PRIVATE_ENV = {
    "CONFBRIDGE_CONTROL_HTTP_PORT": "0",
    "CONFBRIDGE_ANNOUNCEMENTS_ONLY_PARTICIPANT": "false",  # prompts and chimes would
    "CONFBRIDGE_ANNOUNCEMENTS_JOIN_LEAVE_TONES": "false",  # muddy the FFT and burst checks
}

LOAD_ENV = {  # our numpy batches are small: BLAS helper threads would only spin and steal CPU
    **os.environ,
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
}


@dataclass
class LoadOptions:
    """Everything a run needs; the command line maps onto it one to one."""

    rooms: int = 2
    per_room: int = 5
    talkers: int = 2
    ramp: float = 50.0
    duration: float = 10.0
    codec: str = "PCMU"
    wav: str | None = None
    target: str | None = None  # host:port of a running bridge; None: start one
    metrics_url: str | None = None  # with --target: its /metrics
    bridge_pid: int | None = None  # with --target: for its CPU
    out: Path = Path("loadtest-out")
    processes: int = 1
    loop: str = "uvloop"
    warmup: float = 1.0
    bridge_env: list[str] = field(default_factory=list)  # KEY=VALUE for a private bridge
    per_call_addresses: bool = False  # also on when bridge_env turns the shared RTP port on
    progress: bool = True
    table: bool = True

    def spec(self) -> PlanSpec:
        shared_port = any(
            item.split("=", 1)[0] == "CONFBRIDGE_RTP_SHARED_PORT"
            and item.split("=", 1)[1].lower() in ("1", "true", "yes", "on")
            for item in self.bridge_env
            if "=" in item
        )
        return PlanSpec(
            self.rooms,
            self.per_room,
            self.talkers,
            self.ramp,
            codec=self.codec,
            wav=self.wav,
            per_call_addresses=self.per_call_addresses or shared_port,
        )


@dataclass
class Target:
    """The bridge under test; `process` is set when this run started it."""

    host: str
    port: int
    metrics_url: str | None
    pid: int | None
    process: Any = None  # scripts/bench_common.BridgeProcess


BridgeFactory = Callable[[LoadOptions], Target]


def start_bridge(options: LoadOptions) -> Target:
    """A private bridge via the benchmarks' BridgeProcess (needs a checkout: scripts/)."""
    scripts = Path(__file__).resolve().parents[2] / "scripts"
    if str(scripts) not in sys.path:
        sys.path.insert(0, str(scripts))
    from bench_common import LOOPBACK, BridgeProcess

    participants = options.rooms * options.per_room
    bridge = BridgeProcess(
        max_participants=max(2, min(1000, options.per_room)),
        rtp_ports=max(200, 2 * participants + 100),
        extra_env={**PRIVATE_ENV, **dict(item.split("=", 1) for item in options.bridge_env)},
    ).start()
    deadline = time.monotonic() + 15.0
    while not (started := bridge.find("control.http_started")):
        if time.monotonic() > deadline:
            bridge.stop()
            raise RuntimeError("the bridge did not start its HTTP API")
        time.sleep(0.05)
    url = f"http://{LOOPBACK}:{started[0]['port']}/metrics"
    return Target(LOOPBACK, bridge.port, url, bridge.pid, bridge)


def external_target(options: LoadOptions) -> Target:
    assert options.target is not None
    host, _, port = options.target.rpartition(":")
    return Target(host or "127.0.0.1", int(port), options.metrics_url, options.bridge_pid)


@dataclass
class Tally:
    """What the load processes have reported so far."""

    calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    ended: set[int] = field(default_factory=set)
    stats: dict[int, dict[str, int]] = field(default_factory=dict)
    stopped: dict[int, dict[str, Any]] = field(default_factory=dict)
    results: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    ready: set[int] = field(default_factory=set)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def take(self, worker: int, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "ready":
            self.ready.add(worker)
        elif kind == "call":
            self.calls[event["index"]] = event
        elif kind == "ended":
            self.ended.add(event["index"])
        elif kind == "stats":
            self.stats[worker] = event
        elif kind == "stopped":
            self.stopped[worker] = event
        elif kind == "result":
            self.results[worker] = event["participants"]
        self.changed.set()

    def total(self, key: str) -> int:
        return sum(int(s.get(key, 0)) for s in self.stats.values())

    async def until(self, done: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not done():
            self.changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)
        return True


class LoadProcess:
    """One `python -m bridge.tools.loadgen` child: JSON lines in, JSON lines out."""

    def __init__(self, worker: int, tally: Tally) -> None:
        self.worker = worker
        self.tally = tally
        self.process: asyncio.subprocess.Process | None = None
        self.reader: asyncio.Task[None] | None = None

    async def start(self, loop_name: str) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bridge.tools.loadgen",
            loop_name,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=LOAD_ENV,
            limit=2**26,  # the final result line holds every participant's figures
        )
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while line := await self.process.stdout.readline():
            self.tally.take(self.worker, json.loads(line))
        self.tally.changed.set()

    def send(self, message: dict[str, Any]) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write((json.dumps(message) + "\n").encode())

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def close(self) -> None:
        if self.process is None:
            return
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), 10.0)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        if self.reader is not None:
            await self.reader


class Coordinator:
    """One run, from the bridge's start to the written report."""

    def __init__(self, options: LoadOptions, target: Target) -> None:
        self.options = options
        self.spec = options.spec()
        self.target = target
        self.tally = Tally()
        self.workers = [LoadProcess(w, self.tally) for w in range(max(1, options.processes))]
        self.record = RunRecord(options=_options_dict(options), spec=self.spec)
        self.client = httpx.AsyncClient()
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
            console=Console(stderr=True),
            disable=not options.progress,
        )

    async def run(self) -> dict[str, Any]:
        try:
            with self.progress:
                await self._start_workers()
                await self._ramp()
                await self._measure()
                await self._finish()
        finally:
            await self.client.aclose()
            for worker in self.workers:
                with contextlib.suppress(ProcessLookupError):
                    await worker.close()
        return summarise(self.record)

    async def _start_workers(self) -> None:
        for worker in self.workers:
            await worker.start(self.options.loop)
        if not await self.tally.until(lambda: len(self.tally.ready) == len(self.workers), 30.0):
            raise RuntimeError("load processes did not start")
        start = time.monotonic() + 0.3
        self.record.start = start
        target = self.target
        for worker in self.workers:
            indices = list(range(worker.worker, self.spec.participants, len(self.workers)))
            worker.send(
                {
                    "spec": self.spec.as_dict(),
                    "indices": indices,
                    "host": target.host,
                    "port": target.port,
                    "start": start,
                    "worker": worker.worker,
                }
            )
        self.scraper = asyncio.create_task(self._scrape_loop())

    async def _ramp(self) -> None:
        total = self.spec.participants
        task = self.progress.add_task("calls", total=total, info="")
        settle = (total - 1) / self.spec.ramp + SETTLE_SECONDS

        def settled() -> bool:
            self.progress.update(task, completed=len(self.tally.calls), info=self._info())
            return len(self.tally.calls) >= total or not any(w.alive for w in self.workers)

        await self.tally.until(settled, settle)
        self.progress.update(task, completed=len(self.tally.calls))
        await asyncio.sleep(self.options.warmup)

    async def _measure(self) -> None:
        record, duration = self.record, self.options.duration
        record.measure_start = time.monotonic()
        record.first = await self._read_bridge()
        record.measure_end = record.measure_start + duration
        window = (record.measure_end - min(ANALYSIS_SECONDS, duration / 2), record.measure_end)
        record.window = window
        for worker in self.workers:
            worker.send({"cmd": "measure", "end": record.measure_end, "window": window})
        task = self.progress.add_task("measure", total=round(duration), info="")
        while (left := record.measure_end - time.monotonic()) > 0:
            await asyncio.sleep(min(0.5, left))
            elapsed = round(duration - max(0.0, record.measure_end - time.monotonic()))
            self.progress.update(task, completed=elapsed, info=self._info())
        record.last = await self._read_bridge()

    async def _finish(self) -> None:
        """Streams stop at the window's end; once drained, read the bridge's packet counters
        (every call still up), then stop a private bridge first so it logs its tick stats."""
        workers = len(self.workers)
        await self.tally.until(lambda: len(self.tally.stopped) == workers, 15.0)
        await asyncio.sleep(COUNTERS_SETTLE_SECONDS)
        self.record.drained = await self._read_bridge()
        self.record.ended_early = sorted(self.tally.ended)  # before anyone stopped the bridge
        self.scraper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.scraper
        if self.target.process is not None:
            self.record.bridge_events = await asyncio.to_thread(self.target.process.stop)
        for worker in self.workers:
            if worker.alive:
                worker.send({"cmd": "hangup"})
        await self.tally.until(lambda: len(self.tally.results) == workers, 20.0)
        self.record.calls = dict(self.tally.calls)
        self.record.stopped = list(self.tally.stopped.values())
        self.record.participants = sorted(
            (p for ps in self.tally.results.values() for p in ps), key=lambda p: p["index"]
        )

    async def _read_bridge(self) -> tuple[Scrape | None, float | None, float]:
        metrics = (
            await scrape(self.client, self.target.metrics_url) if self.target.metrics_url else None
        )
        return metrics, process_cpu(self.target.pid), time.monotonic()

    async def _scrape_loop(self) -> None:
        while True:
            metrics, cpu, at = await self._read_bridge()
            if metrics is not None:
                self.record.timeline.append((metrics, cpu, at))
            await asyncio.sleep(SCRAPE_SECONDS)

    def _info(self) -> str:
        tally = self.tally
        failed = sum(1 for c in tally.calls.values() if c["status"] != 200)
        return (
            f"up {tally.total('up')}  failed {failed}  sent {tally.total('sent')}  "
            f"recv {tally.total('received')}  lost {tally.total('lost')}  "
            f"late {tally.total('late')}"
        )


def _options_dict(options: LoadOptions) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(options).items()}


async def run_loadtest(
    options: LoadOptions, bridge_factory: BridgeFactory | None = None
) -> dict[str, Any]:
    """One whole run; returns the summary that also goes to `<out>/loadtest.json`."""
    factory = bridge_factory or (external_target if options.target else start_bridge)
    target = await asyncio.to_thread(factory, options)
    try:
        summary = await Coordinator(options, target).run()
    finally:
        if target.process is not None and target.process.process.poll() is None:
            await asyncio.to_thread(target.process.stop)  # a run that failed half-way
    summary["files"] = write_outputs(summary, options.out)
    if options.table:
        print_summary(summary)
    return summary


def parse_args(argv: list[str] | None = None) -> LoadOptions:
    parser = argparse.ArgumentParser(
        description="Load test: simulated participants call the bridge over SIP and stream RTP."
    )
    add = parser.add_argument
    add("--rooms", type=int, default=2)
    add("--per-room", type=int, default=5, help="participants per room")
    add("--talkers", type=int, default=2, help="talkers per room (one also sends the bursts)")
    add("--ramp", type=float, default=50.0, help="calls per second while dialling in")
    add("--duration", type=float, default=10.0, help="seconds measured with every call up")
    add("--codec", choices=("PCMU", "PCMA"), default="PCMU")
    add("--wav", help="talkers send this WAV (16-bit) instead of tones")
    add("--target", help="host:port of a running bridge (default: start a private one)")
    add("--metrics-url", help="with --target: the bridge's /metrics URL")
    add("--bridge-pid", type=int, help="with --target: the bridge's pid, for its CPU")
    add("--out", type=Path, default=Path("loadtest-out"), help="directory for JSON and plots")
    add("--processes", type=int, default=1, help="load processes sharing the participants")
    add("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    add("--warmup", type=float, default=1.0, help="seconds between the last call and measuring")
    add(
        "--bridge-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the private bridge (repeatable)",
    )
    add(
        "--per-call-addresses",
        action="store_true",
        help="each call sends from its own 127.64.x.y address (a bridge with rtp.shared_port "
        "needs it; on by itself with --bridge-env CONFBRIDGE_RTP_SHARED_PORT=true)",
    )
    add("--no-progress", dest="progress", action="store_false")
    args = parser.parse_args(argv)
    options = LoadOptions(**vars(args))
    try:
        options.spec()
    except ValueError as error:
        parser.error(str(error))
    if any("=" not in item for item in options.bridge_env):
        parser.error("--bridge-env takes KEY=VALUE")
    if options.duration < 1.0:
        parser.error("--duration must be at least 1 s")
    return options


def main(argv: list[str] | None = None) -> int:
    """The `loadtest` command: exit 0 when every call was answered and nothing was lost."""
    options = parse_args(argv)
    summary = asyncio.run(run_loadtest(options))
    return 0 if summary["verdict"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
