"""Capacity benchmark on the load test: how many participants the bridge holds.

Scenario 1 steps the load up in rooms of 10 with 2 talkers (200, 400, 600, ... participants), a
fresh private bridge per step, until a step fails: p99 mixer tick lateness over 5 ms, or a packet
lost inside the bridge (its RTP-in counter short of what the generator sent), or a call not
answered. The largest step held is printed with the bridge's CPU per participant. Scenario 2:
one room of 350 (the Aculab maximum) with 3 talkers. Both run once per media worker count
(`--workers 1,2` by default; 0 mixes in the main process). The load generator shares the
machine's cores with the bridge: its CPU is in the table too.

    .venv/bin/python scripts/bench.py [--quick] [--workers 1,2] [--max-participants 400]

`--codecs` measures instead the CPU per participant of G.711, G.722 and Opus rooms' tick
(`bench_codecs.py`: all talking and 2 of 10, no sockets).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bench_codecs
from bench_common import print_table

from bridge.tools.loadtest import LoadOptions, run_loadtest

HEADERS = (
    "scenario",
    "parts",
    "answered",
    "tick p50 ms",
    "tick p99 ms",
    "ticks >5ms %",
    "bridge rx missing",
    "bridge seq gaps",
    "concealed",
    "trimmed",
    "ramp conc / trim",
    "client lost",
    "late >40ms",
    "delay p50 ms",
    "delay p99 ms",
    "bursts heard %",
    "audio ok",
    "bridge CPU %",
    "CPU % / part",
    "CPU ms / part-s",
    "generator CPU %",
    "gen ms / part-s",
    "gen / bridge",
    "held",
)


@dataclass(frozen=True)
class Step:
    name: str
    rooms: int
    per_room: int
    talkers: int
    workers: int


def held(summary: dict[str, Any]) -> bool:
    """The step's pass rule: every call up, p99 tick lateness at most 5 ms, nothing lost in
    the bridge (what it received equals what the generator sent), and every participant's
    audio right by FFT (its room's tones heard, no other room's tone standing out of the
    spectrum around it: a concealed or skipped frame is not a leak; the bridge counts those,
    "concealed" and "trimmed")."""
    bridge = summary["bridge"]
    p99 = bridge.get("tick_lateness", {}).get("p99_ms")
    audio = summary.get("audio", {})
    return (
        summary["calls"]["failed"] == 0
        and p99 is not None
        and p99 <= 5.0
        and bridge.get("rx_missing") == 0
        and audio.get("checked", 0) > 0
        and audio.get("ok") == audio.get("checked")
    )


def row(step: Step, summary: dict[str, Any]) -> tuple[object, ...]:
    bridge, cpu, delay = summary["bridge"], summary["cpu"], summary["delay_ms"]
    ticks, before = bridge.get("tick_lateness", {}), bridge.get("before_window", {})
    over = ticks.get("over_5ms_fraction")
    heard = 100.0 * delay["count"] / delay["expected"] if delay["expected"] else None
    return tuple(
        "-" if value is None else value
        for value in (
            step.name,
            summary["calls"]["attempted"],
            summary["calls"]["answered"],
            _round(ticks.get("p50_ms")),
            _round(ticks.get("p99_ms")),
            _round(None if over is None else 100.0 * over),
            bridge.get("rx_missing"),
            bridge.get("seq_gaps"),
            bridge.get("concealed"),
            bridge.get("trimmed"),
            "{} / {}".format(*(before.get(k, "-") for k in ("concealed", "trimmed"))),
            summary["rtp"]["window"]["lost"],
            summary["rtp"]["window"]["late"],
            _round(delay["p50"]),
            _round(delay["p99"]),
            _round(heard),
            f"{summary['audio'].get('ok', 0)}/{summary['audio'].get('checked', 0)}",
            _round(cpu.get("bridge_percent")),
            _round(cpu.get("bridge_percent_per_participant"), 3),
            _round(cpu.get("bridge_ms_per_participant_second"), 3),
            _round(cpu.get("generator_percent")),
            _round(cpu.get("generator_ms_per_participant_second"), 3),
            _round(cpu.get("generator_to_bridge"), 2),
            "yes" if held(summary) else "no",
        )
    )


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


async def run_step(args: argparse.Namespace, step: Step, out: Path) -> dict[str, Any]:
    options = LoadOptions(
        rooms=step.rooms,
        per_room=step.per_room,
        talkers=step.talkers,
        ramp=args.ramp,
        duration=args.seconds,
        out=out / f"{step.rooms}x{step.per_room}-w{step.workers}",
        processes=args.processes,
        loop=args.loop,
        bridge_env=[*args.bridge_env, f"CONFBRIDGE_MEDIA_WORKERS={step.workers}"],
        progress=False,
        table=False,
    )
    print(f"  {step.name}: {step.rooms * step.per_room} participants ...", flush=True)
    return await run_loadtest(options)


async def run(args: argparse.Namespace) -> int:
    out = Path(args.out or tempfile.mkdtemp(prefix="confbridge-bench-"))
    rows: list[tuple[object, ...]] = []
    verdicts: list[str] = []
    for workers in args.workers:
        best: tuple[int, dict[str, Any]] | None = None
        print(
            f"scenario 1, {workers} media worker(s): rooms of 10 with 2 talkers, "
            f"{args.seconds:.0f} s per step",
            flush=True,
        )
        participants = args.start
        while participants <= args.max_participants:
            step = Step(f"rooms of 10, {workers}w", participants // 10, 10, 2, workers)
            summary = await run_step(args, step, out)
            rows.append(row(step, summary))
            if not held(summary):
                break
            best = (participants, summary)
            participants += args.step
        if args.start <= args.max_participants:
            verdicts.append(f"{workers} media worker(s): {verdict(best, args)}")
        if not args.no_big_room:
            size = args.big_room
            print(f"scenario 2, {workers} media worker(s): one room of {size}, 3 talkers")
            step = Step(f"one room of {size}, {workers}w", 1, size, 3, workers)
            rows.append(row(step, await run_step(args, step, out)))
    print()
    print_table(HEADERS, rows)
    print()
    print("\n".join(verdicts))
    print(f"JSON and plots per step under {out}")
    return 0


def verdict(best: tuple[int, dict[str, Any]] | None, args: argparse.Namespace) -> str:
    if best is None:
        return "largest load held: none (the first step already failed)"
    participants, summary = best
    cpu = summary["cpu"]
    capped = ""
    if participants + args.step > args.max_participants:
        capped = " (stopped by --max-participants, not by a failure)"
    return (
        f"largest load held: {participants} participants in rooms of 10{capped}; bridge CPU "
        f"{cpu.get('bridge_percent', 0):.1f}% of one core, "
        f"{cpu.get('bridge_percent_per_participant', 0):.3f}% per participant, "
        f"{cpu.get('bridge_ms_per_participant_second', 0):.3f} CPU ms per "
        f"participant-second (the load generator "
        f"{cpu.get('generator_ms_per_participant_second', 0):.3f}); mouth-to-ear delay "
        f"p50 {_round(summary['delay_ms'].get('p50'), 1)} ms, "
        f"p99 {_round(summary['delay_ms'].get('p99'), 1)} ms"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--quick", action="store_true", help="smoke run: small steps, short windows")
    add("--start", type=int, help="participants in the first step (default 200; quick 10)")
    add("--step", type=int, help="participants added per step (default 200; quick 10)")
    add("--max-participants", type=int, help="stop stepping here (default 4000; quick 20)")
    add("--seconds", type=float, help="measured seconds per step (default 10; quick 3)")
    add("--big-room", type=int, help="scenario 2's room size (default 350; quick 40)")
    add("--no-big-room", action="store_true", help="skip scenario 2")
    add("--ramp", type=float, default=100.0, help="calls per second while dialling in")
    add("--processes", type=int, default=1, help="load processes")
    add("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    add("--bridge-env", action="append", default=[], metavar="KEY=VALUE")
    add(
        "--workers",
        default="1,2",
        help="media worker counts to run each scenario with, comma-separated (0: in-process)",
    )
    add("--out", help="directory for each step's JSON and plots (default: a temporary one)")
    add("--codecs", action="store_true", help="CPU per participant of G.711/G.722/Opus rooms")
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {
        "start": 10 if quick else 200,
        "step": 10 if quick else 200,
        "max_participants": 20 if quick else 4000,
        "seconds": 3.0 if quick else 10.0,
        "big_room": 40 if quick else 350,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    try:
        args.workers = [int(count) for count in args.workers.split(",")]
    except ValueError:
        parser.error("--workers takes counts like 1,2")
    if any(not 0 <= count <= 64 for count in args.workers):
        parser.error("--workers: each count must be 0..64")
    if args.start % 10 or args.step % 10 or args.start < 10 or args.step < 10:
        parser.error("--start and --step must be multiples of 10 (rooms of 10)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.codecs:
        return bench_codecs.main(args.seconds)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
