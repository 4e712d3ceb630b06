"""Benchmark: SIP calls per second the bridge completes against SIPp's built-in `uac` scenario.

Each call is INVITE/100/200/ACK, then BYE/200 at once (-d 0), so a call is pure signalling plus
the bridge's per-call work (room join/leave, an RTP port pair opened and closed, log lines). One
SIPp run per target rate; counts and timings come from SIPp's statistics file, the bridge's CPU
from /proc. Not a test: it prints numbers, it asserts nothing about timings.

    .venv/bin/python scripts/bench_sip_cps.py [--calls 3000] [--rates 100,200,400,800]
        [--transport udp|tcp]
"""

from __future__ import annotations

import argparse
import csv
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench_common import LOOPBACK, BridgeProcess, free_port, print_table

ROOM = "cps"  # SIPp's -s: every call dials sip:cps@bridge, so the bridge max_participants caps -l
CALL_LIMIT = 1000  # SIPp -l: concurrent calls; the bridge's max_participants is set to match


@dataclass
class Step:
    rate: int
    calls: int
    successful: int
    failed: int
    retransmissions: int
    elapsed_s: float
    setup_ms: float
    bridge_cpu_s: float
    sipp_cpu_s: float
    returncode: int

    @property
    def achieved_cps(self) -> float:
        return self.successful / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def cpu_ms_per_call(self) -> float:
        return 1000.0 * self.bridge_cpu_s / self.successful if self.successful else 0.0

    @property
    def bridge_cpu_percent(self) -> float:
        return 100.0 * self.bridge_cpu_s / self.elapsed_s if self.elapsed_s > 0 else 0.0


def sipp_duration_s(text: str) -> float:
    """SIPp's HH:MM:SS:microseconds duration format, in seconds."""
    hours, minutes, seconds, micros = (int(part) for part in text.split(":"))
    return hours * 3600 + minutes * 60 + seconds + micros / 1e6


def sipp_epoch(text: str) -> float:
    """SIPp's `date<TAB>time<TAB>epoch` timestamp column: the epoch part."""
    return float(text.split("\t")[-1])


def read_stats(path: Path) -> dict[str, str]:
    """The last (final, cumulative) row of SIPp's -stf file, by column name."""
    with path.open(newline="") as handle:
        rows = [row for row in csv.reader(handle, delimiter=";") if row]
    return dict(zip(rows[0], rows[-1], strict=False))


def run_step(bridge: BridgeProcess, rate: int, calls: int, transport: str, workdir: Path) -> Step:
    """One SIPp run of `calls` calls at `rate` cps; returns SIPp's counts and both CPU costs."""
    stats_file = workdir / f"sipp-{transport}-{rate}.csv"
    timeout = int(max(60, 4 * calls / rate + 40))
    command = [
        "sipp",
        f"{LOOPBACK}:{bridge.port}",
        "-i",
        LOOPBACK,
        "-p",
        str(free_port()),
        "-mp",
        str(free_port((socket.SOCK_DGRAM,))),
        "-t",
        "t1" if transport == "tcp" else "u1",
        "-sn",
        "uac",
        "-s",
        ROOM,
        "-d",
        "0",
        "-r",
        str(rate),
        "-m",
        str(calls),
        "-l",
        str(CALL_LIMIT),
        "-nostdin",
        "-trace_stat",
        "-stf",
        str(stats_file),
        "-fd",
        "1",
        "-timeout",
        f"{timeout}s",
        "-timeout_error",
    ]
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    bridge_before = bridge.cpu_seconds()
    started = time.monotonic()
    done = subprocess.run(
        command, cwd=workdir, capture_output=True, text=True, timeout=timeout + 30
    )
    wall = time.monotonic() - started
    bridge_cpu = bridge.cpu_seconds() - bridge_before
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    sipp_cpu = (children_after.ru_utime - children_before.ru_utime) + (
        children_after.ru_stime - children_before.ru_stime
    )
    if not stats_file.exists():
        print(f"SIPp wrote no statistics (rc {done.returncode}):\n{done.stderr[-2000:]}")
        return Step(rate, calls, 0, calls, 0, wall, 0.0, bridge_cpu, sipp_cpu, done.returncode)
    stats = read_stats(stats_file)
    elapsed = sipp_epoch(stats["CurrentTime"]) - sipp_epoch(stats["StartTime"])
    if done.returncode not in (0, 1):  # 1 = some calls failed: reported in the table
        print(f"SIPp exit {done.returncode} at {rate} cps:\n{done.stderr[-1000:]}")
    return Step(
        rate=rate,
        calls=calls,
        successful=int(stats["SuccessfulCall(C)"]),
        failed=int(stats["FailedCall(C)"]),
        retransmissions=int(stats["Retransmissions(C)"]),
        elapsed_s=elapsed,
        setup_ms=1000.0 * sipp_duration_s(stats["ResponseTime1(C)"]),
        bridge_cpu_s=bridge_cpu,
        sipp_cpu_s=sipp_cpu,
        returncode=done.returncode,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3000, help="calls per rate step")
    parser.add_argument(
        "--rates", default="100,200,400,800", help="comma-separated target call rates (cps)"
    )
    parser.add_argument("--transport", choices=("udp", "tcp"), default="udp")
    args = parser.parse_args()
    rates = [int(rate) for rate in args.rates.split(",") if rate]
    if shutil.which("sipp") is None:
        print("sipp is not installed (scripts/setup.sh --test installs sip-tester)")
        return 2

    bridge = BridgeProcess(max_participants=CALL_LIMIT, rtp_ports=2 * CALL_LIMIT + 200)
    bridge.start()
    steps: list[Step] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-sipp-") as tmp:
            for rate in rates:
                print(f"... {args.calls} calls at {rate} cps over {args.transport}", flush=True)
                steps.append(run_step(bridge, rate, args.calls, args.transport, Path(tmp)))
                time.sleep(1.0)  # let the last BYE transactions settle between steps
    finally:
        events = bridge.stop()
    stopped = next((e for e in events if e.get("event") == "bridge.stopped"), {})
    warnings = bridge.warnings()

    print()
    print(f"SIPp uac (INVITE/200/ACK/BYE, -d 0) over {args.transport}, {args.calls} calls a step")
    print_table(
        (
            "target cps",
            "completed",
            "failed",
            "retrans",
            "elapsed s",
            "achieved cps",
            "setup ms",
            "bridge CPU s",
            "bridge CPU %",
            "CPU ms/call",
            "SIPp CPU s",
        ),
        [
            (
                s.rate,
                s.successful,
                s.failed,
                s.retransmissions,
                round(s.elapsed_s, 2),
                round(s.achieved_cps, 1),
                round(s.setup_ms, 1),
                round(s.bridge_cpu_s, 2),
                round(s.bridge_cpu_percent, 1),
                round(s.cpu_ms_per_call, 3),
                round(s.sipp_cpu_s, 2),
            )
            for s in steps
        ],
    )
    if stopped:
        user, system = stopped.get("cpu_user_s", 0.0), stopped.get("cpu_system_s", 0.0)
        print(
            f"bridge CPU, whole run incl. start-up: {user + system:.2f} s "
            f"(user {user:.2f}, sys {system:.2f}); warnings/errors logged: {len(warnings)}"
        )
    else:
        print("bridge.stopped was not logged (the bridge was killed?)")
    print("setup ms = SIPp's mean INVITE->200 response time (1 ms resolution)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
