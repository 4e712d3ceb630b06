"""Benchmark: the media hot path with real RTP peers, 5 rooms of 10 G.711 participants for 5 min.

The bridge runs as its own process; this script is the load generator (one asyncio process,
uvloop by default, one `Phone` per participant streaming its own tone). Both share the machine's
cores, so both CPU costs are reported. At the end the bridge gets SIGTERM while every call is up,
so it logs `room.tick_stats` (how late each 20 ms tick started) for each room; an FFT of the last
second each phone heard checks that the mix really flowed (room-mates heard, itself not).
Not a test: it prints numbers, it asserts nothing about timings.

    .venv/bin/python scripts/bench_mixer.py [--seconds 300] [--rooms 5] [--per-room 10]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

import uvloop
from bench_common import LOOPBACK, BridgeProcess, print_table, self_cpu_seconds

from bridge.media.tones import tone_levels
from bridge.tools.phone import Phone

AMPLITUDE = 3000  # nine room-mates sum to 27,000: the mix never clips, so no intermodulation
HEARD_DB = -30.0  # a room-mate's tone reads about -21 dBFS
ABSENT_DB = -50.0  # own tone and other rooms' tones: G.711 noise and harmonics stay under this
ANALYSIS_SECONDS = 1.0
TRIM_EVERY_SECONDS = 5.0  # drop recorded frames: 50 phones x 5 min of audio would be ~400 MB


def tone_for(index: int) -> float:
    """A distinct frequency per participant; the odd 61 Hz step keeps low harmonics off others."""
    return 307.0 + 61.0 * index


@dataclass
class Snapshot:
    at: float
    bridge_cpu: float
    self_cpu: float
    received: list[int]
    sent: list[int]


def snapshot(bridge: BridgeProcess, phones: list[Phone]) -> Snapshot:
    return Snapshot(
        at=time.monotonic(),
        bridge_cpu=bridge.cpu_seconds(),
        self_cpu=self_cpu_seconds(),
        received=[phone.received_packets for phone in phones],
        sent=[phone.sent_packets for phone in phones],
    )


async def dial_all(phones: list[Phone], batch: int = 10) -> list[int | str]:
    """Dial in batches (as people join a call), not 50 INVITEs in one burst."""
    statuses: list[int | str] = []
    for start in range(0, len(phones), batch):
        results = await asyncio.gather(
            *(phone.call() for phone in phones[start : start + batch]), return_exceptions=True
        )
        statuses += [r if isinstance(r, int) else type(r).__name__ for r in results]
    return statuses


def check_audio(phones: list[Phone], rooms: list[str], since: float, until: float) -> list[str]:
    """FFT of what each phone heard: room-mates' tones present, its own and others' absent."""
    problems = []
    all_tones = [phone.tone_hz or 0.0 for phone in phones]
    worst_heard, worst_absent = 0.0, -200.0
    for phone, room in zip(phones, rooms, strict=True):
        audio = phone.audio(since, until)
        if len(audio) < 0.8 * 8000 * (until - since):
            problems.append(f"{phone.user} heard only {len(audio)} samples")
            continue
        levels = tone_levels(audio, all_tones)
        for other, other_room in zip(phones, rooms, strict=True):
            level = levels[other.tone_hz or 0.0]
            expected = other_room == room and other is not phone
            if expected:
                worst_heard = min(worst_heard, level)
                if level < HEARD_DB:
                    problems.append(f"{phone.user} hears {other.user} at only {level:.1f} dBFS")
            else:
                worst_absent = max(worst_absent, level)
                if level > ABSENT_DB:
                    problems.append(f"{phone.user} hears {other.user} at {level:.1f} dBFS")
    print(
        f"audio check over the last {until - since:.1f} s: quietest room-mate "
        f"{worst_heard:.1f} dBFS (want > {HEARD_DB}), loudest own/other-room tone "
        f"{worst_absent:.1f} dBFS (want < {ABSENT_DB}); problems: {len(problems)}"
    )
    return problems


async def run(args: argparse.Namespace) -> int:
    participants = args.rooms * args.per_room
    bridge = BridgeProcess(
        max_participants=max(args.per_room, 2), rtp_ports=max(200, 4 * participants)
    )
    await asyncio.to_thread(bridge.start)
    loop = asyncio.get_running_loop()

    idle_before = bridge.cpu_seconds()
    idle_started = time.monotonic()
    await asyncio.sleep(args.idle_seconds)
    idle_cpu = bridge.cpu_seconds() - idle_before
    idle_wall = time.monotonic() - idle_started

    rooms = [f"bench{index // args.per_room}" for index in range(participants)]
    phones = [
        Phone(
            LOOPBACK,
            bridge.port,
            room,
            tone_hz=tone_for(index),
            amplitude=AMPLITUDE,
            user=f"p{index:02d}",
        )
        for index, room in enumerate(rooms)
    ]
    try:
        statuses = await dial_all(phones)
        if any(status != 200 for status in statuses):
            print(f"not every call was answered: {statuses}")
            return 1
        print(f"{participants} calls up in {args.rooms} rooms; warming up 2 s", flush=True)
        await asyncio.sleep(2.0)

        first = snapshot(bridge, phones)
        end = first.at + args.seconds
        next_report = first.at + 60.0
        while (now := time.monotonic()) < end - ANALYSIS_SECONDS:
            await asyncio.sleep(min(TRIM_EVERY_SECONDS, end - ANALYSIS_SECONDS - now))
            for phone in phones:
                phone.heard.clear()
            if time.monotonic() >= next_report:
                next_report += 60.0
                spent = bridge.cpu_seconds() - first.bridge_cpu
                elapsed = time.monotonic() - first.at
                print(f"  {elapsed:5.0f} s: bridge CPU {100 * spent / elapsed:.1f}%", flush=True)
        analysis_from = loop.time()
        await asyncio.sleep(max(0.0, end - time.monotonic()))
        analysis_to = loop.time()
        last = snapshot(bridge, phones)
        problems = check_audio(phones, rooms, analysis_from, analysis_to)
        for problem in problems[:10]:
            print(f"  {problem}")

        # SIGTERM while every call is up: the bridge logs each room's tick stats, then BYEs us.
        events = await asyncio.to_thread(bridge.stop)
    finally:
        bridge.kill()
        await asyncio.gather(*(phone.hangup(timeout=2.0) for phone in phones))

    report(args, bridge, events, first, last, phones, idle_cpu, idle_wall)
    return 0


def report(
    args: argparse.Namespace,
    bridge: BridgeProcess,
    events: list[dict[str, Any]],
    first: Snapshot,
    last: Snapshot,
    phones: list[Phone],
    idle_cpu: float,
    idle_wall: float,
) -> None:
    participants = len(phones)
    window = last.at - first.at
    bridge_cpu = last.bridge_cpu - first.bridge_cpu
    generator_cpu = last.self_cpu - first.self_cpu
    per_minute = bridge_cpu / (participants * window / 60.0)

    stats = sorted(
        (e for e in events if e.get("event") == "room.tick_stats"), key=lambda e: e["room"]
    )
    rows: list[tuple[object, ...]] = []
    for stat in stats:
        ticks = stat["ticks"]
        rows.append(
            (
                stat["room"],
                ticks,
                stat["late_over_5ms"],
                round(100.0 * stat["late_over_5ms"] / ticks, 3) if ticks else 0.0,
                round(stat["max_late_ms"], 2),
                round(stat["total_late_ms"] / ticks, 3) if ticks else 0.0,
            )
        )
    total_ticks = sum(s["ticks"] for s in stats)
    total_late = sum(s["late_over_5ms"] for s in stats)
    if stats:
        rows.append(
            (
                "total",
                total_ticks,
                total_late,
                round(100.0 * total_late / total_ticks, 3) if total_ticks else 0.0,
                round(max(s["max_late_ms"] for s in stats), 2),
                round(sum(s["total_late_ms"] for s in stats) / total_ticks, 3)
                if total_ticks
                else 0.0,
            )
        )

    print()
    print(
        f"{participants} participants ({args.rooms} rooms x {args.per_room}), G.711 PCMU, "
        f"{window:.0f} s measured, load generator on {args.loop}"
    )
    print("mixer tick lateness against absolute 20 ms deadlines (room.tick_stats, whole call):")
    print_table(("room", "ticks", "late >5 ms", "late %", "max late ms", "mean late ms"), rows)
    stopped = next((e for e in events if e.get("event") == "bridge.stopped"), {})
    if stopped:
        whole = stopped["cpu_user_s"] + stopped["cpu_system_s"]
        print(
            f"bridge clock: {stopped['ticks']} ticks, {stopped['skipped_ticks']} skipped; "
            f"bridge CPU whole run {whole:.1f} s (user {stopped['cpu_user_s']:.1f}, "
            f"sys {stopped['cpu_system_s']:.1f})"
        )
    else:
        print("bridge.stopped was not logged: no whole-run CPU figure")

    rx = [(b - a) / window for a, b in zip(first.received, last.received, strict=True)]
    tx = [(b - a) / window for a, b in zip(first.sent, last.sent, strict=True)]
    print()
    print_table(
        ("cost over the measured window", "value"),
        [
            ("bridge CPU s (user+sys)", round(bridge_cpu, 1)),
            ("bridge CPU % of one core", round(100.0 * bridge_cpu / window, 1)),
            ("bridge CPU s per participant-minute", round(per_minute, 4)),
            ("bridge idle CPU % (no calls, before)", round(100.0 * idle_cpu / idle_wall, 2)),
            ("load generator CPU s", round(generator_cpu, 1)),
            ("load generator CPU % of one core", round(100.0 * generator_cpu / window, 1)),
            ("RTP pkts/s received per phone min", round(min(rx), 2)),
            ("RTP pkts/s received per phone mean", round(statistics.fmean(rx), 2)),
            ("RTP pkts/s received per phone max", round(max(rx), 2)),
            ("RTP pkts/s sent per phone mean", round(statistics.fmean(tx), 2)),
            ("bridge warnings/errors logged", len(bridge.warnings())),
        ],
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="measured time with calls up")
    parser.add_argument("--rooms", type=int, default=5)
    parser.add_argument("--per-room", type=int, default=10)
    parser.add_argument("--idle-seconds", type=float, default=5.0, help="idle CPU baseline")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = parser.parse_args()
    if args.seconds < 2 * ANALYSIS_SECONDS:
        parser.error(f"--seconds must be at least {2 * ANALYSIS_SECONDS}")
    if args.loop == "uvloop":
        return uvloop.run(run(args))
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
