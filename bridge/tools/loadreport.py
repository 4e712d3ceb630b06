"""Turns a load test's raw measurements into its summary, JSON file, plots and table.

Kept apart from the coordinator so the figures can be recomputed from a record without a
bridge, and so the benchmark prints the same numbers the load test writes.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from bridge.tools.loadmetrics import Scrape, lateness
from bridge.tools.loadplan import BURST_HZ, MARKER, PlanSpec, tone_plan

HEARD_DB = -30.0  # a room-mate's tone reads about -20 dBFS through G.711 and the mix
ABSENT_DB = -50.0  # own tone and other rooms' tones: G.711 noise and distortion stay under
SPEECH_DB = -50.0  # WAV mode: a listener whose audio is over this hears the talkers
WINDOW_RTP = ("received", "lost", "late")  # the generator's counts over the window
MAX_DELAY = 1.0  # s: an onset later than this after the last burst belongs to no burst
PACKETS_IN = "confbridge_rtp_packets_in_total"
PACKETS_LOST = "confbridge_rtp_packets_lost_total"
FRAMES_CONCEALED = "confbridge_rtp_frames_concealed_total"
FRAMES_TRIMMED = "confbridge_rtp_frames_trimmed_total"
UNMATCHED = "confbridge_rtp_unmatched_total"
PARTICIPANTS = "confbridge_participants"

BridgeRead = tuple[Scrape | None, float | None, float]  # metrics, bridge CPU s, monotonic time


@dataclass
class RunRecord:
    """Everything one run measured, as raw as it came."""

    options: dict[str, Any]
    spec: PlanSpec
    start: float = 0.0
    measure_start: float = 0.0
    measure_end: float = 0.0
    window: tuple[float, float] = (0.0, 0.0)
    first: BridgeRead = (None, None, 0.0)
    last: BridgeRead = (None, None, 0.0)
    drained: BridgeRead = (None, None, 0.0)
    timeline: list[BridgeRead] = field(default_factory=list)
    bridge_events: list[dict[str, Any]] = field(default_factory=list)
    calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    stopped: list[dict[str, Any]] = field(default_factory=list)
    ended_early: list[int] = field(default_factory=list)  # calls the bridge hung up mid-run
    participants: list[dict[str, Any]] = field(default_factory=list)


def summarise(record: RunRecord) -> dict[str, Any]:
    delays = match_delays(record)
    answered = [p for p in record.participants if p["status"] == 200]
    summary: dict[str, Any] = {
        "options": record.options,
        "plan": {
            "rooms": record.spec.rooms,
            "per_room": record.spec.per_room,
            "talkers": record.spec.talkers,
            "participants": record.spec.participants,
            "tones_hz": tone_plan(record.spec.rooms, record.spec.talkers),
            "burst_hz": BURST_HZ,
        },
        "window": {
            "start_s": record.measure_start - record.start,
            "end_s": record.measure_end - record.start,
            "seconds": record.measure_end - record.measure_start,
            "analysis_seconds": record.window[1] - record.window[0],
        },
        "calls": _calls(record),
        "rtp": _rtp(answered, record.stopped),
        "delay_ms": _delay_summary(record, delays, answered),
        "audio": _audio(record, answered),
        "bridge": _bridge(record),
        "cpu": _cpu(record, len(answered)),
        "participants": [_participant(p, delays) for p in record.participants],
        "timeline": {"ticks": _tick_timeline(record), "delays": delays},
    }
    summary["verdict"] = _verdict(summary)
    return summary


# --- delay ------------------------------------------------------------------------------------


def match_delays(record: RunRecord) -> list[dict[str, Any]]:
    """Each listener's first onset after each of its room's bursts: mouth-to-ear delay."""
    sends = {
        p["room"]: sorted(p["bursts_sent"]) for p in record.participants if p["role"] == MARKER
    }
    delays = []
    for p in record.participants:
        times = sends.get(p["room"], [])
        if p["role"] == MARKER or not times:
            continue
        matched: set[int] = set()
        for onset in p["burst_onsets"]:
            i = bisect.bisect_right(times, onset) - 1
            if i < 0 or i in matched or onset - times[i] > MAX_DELAY:
                continue
            matched.add(i)
            delays.append(
                {
                    "t": times[i] - record.start,
                    "ms": (onset - times[i]) * 1000.0,
                    "index": p["index"],
                    "room": p["room"],
                    "in_window": record.measure_start <= times[i] < record.measure_end - MAX_DELAY,
                }
            )
    return delays


def _delay_summary(
    record: RunRecord, delays: list[dict[str, Any]], answered: list[dict[str, Any]]
) -> dict[str, Any]:
    inside = [d["ms"] for d in delays if d["in_window"]]
    listeners: dict[str, int] = {}
    for p in answered:
        if p["role"] != MARKER:
            listeners[p["room"]] = listeners.get(p["room"], 0) + 1
    expected = sum(
        listeners.get(p["room"], 0)
        for p in answered
        if p["role"] == MARKER
        for t in p["bursts_sent"]
        if record.measure_start <= t < record.measure_end - MAX_DELAY
    )
    return {"count": len(inside), "expected": expected, **_spread(inside)}


def _spread(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {k: None for k in ("min", "p50", "p95", "p99", "max", "mean")}
    data = np.asarray(values)
    p50, p95, p99 = np.percentile(data, [50, 95, 99]).tolist()
    return {
        "min": float(data.min()),
        "p50": p50,
        "p95": p95,
        "p99": p99,
        "max": float(data.max()),
        "mean": float(data.mean()),
    }


# --- calls, RTP, audio ----------------------------------------------------------------------


def _calls(record: RunRecord) -> dict[str, Any]:
    statuses: dict[str, int] = {}
    for call in record.calls.values():
        statuses[str(call["status"])] = statuses.get(str(call["status"]), 0) + 1
    setup = [c["setup_ms"] for c in record.calls.values() if c["status"] == 200]
    return {
        "attempted": record.spec.participants,
        "answered": statuses.get("200", 0),
        "failed": record.spec.participants - statuses.get("200", 0),
        "statuses": statuses,
        "ended_by_bridge_early": len(record.ended_early),
        "setup_ms": _spread(setup),
    }


def _rtp(answered: list[dict[str, Any]], stopped: list[dict[str, Any]]) -> dict[str, Any]:
    """The calls' own receive figures: since each began (the loss check needs whole calls),
    and over the window (`window`: what the table shows, beside the bridge's window)."""

    def total(key: str) -> int:
        return int(sum(p[key] for p in answered))

    window = {key: sum(s.get(f"window_{key}", 0) for s in stopped) for key in WINDOW_RTP}

    expected = total("expected")
    jitters = [p["jitter_ms"] for p in answered]
    return {
        "sent": total("sent"),
        "received": total("received"),
        "expected": expected,
        "lost": total("lost"),
        "loss_fraction": total("lost") / expected if expected else 0.0,
        "late": total("late"),
        "reordered": total("reordered"),
        "odd": total("odd"),
        "jitter_ms_mean": float(np.mean(jitters)) if jitters else None,
        "jitter_ms_max": max((p["max_jitter_ms"] for p in answered), default=None),
        "window": window,
    }


def audio_problems(p: dict[str, Any], window_s: float, speech: bool) -> list[str]:
    """Why one participant's analysis window is wrong (empty list: it heard exactly its room)."""
    audio, who = p["audio"], f"p{p['index']} ({p['room']})"
    if audio["samples"] < 0.8 * 8000 * window_s:
        return [f"{who} heard only {audio['samples']} samples"]
    if speech:
        rms = audio.get("rms_db", -200.0)
        return [] if rms > SPEECH_DB else [f"{who} hears nothing ({rms:.1f} dBFS)"]
    problems = [
        f"{who} hears {hz} Hz at only {db:.1f} dBFS"
        for hz, db in audio["heard_db"].items()
        if db < HEARD_DB
    ]
    if audio.get("own_db") is not None and audio["own_db"] > ABSENT_DB:
        problems.append(f"{who} hears itself at {audio['own_db']:.1f} dBFS")
    if audio.get("other_room_db", -200.0) > ABSENT_DB:
        problems.append(
            f"{who} hears another room's {audio['other_room_hz']} Hz at "
            f"{audio['other_room_db']:.1f} dBFS over the spectrum around it "
            f"({audio['other_room_raw_db']:.1f} dBFS at its frequency)"
        )
    return problems


def _audio(record: RunRecord, answered: list[dict[str, Any]]) -> dict[str, Any]:
    window_s = record.window[1] - record.window[0]
    speech = bool(record.spec.wav)
    problems = {p["index"]: audio_problems(p, window_s, speech) for p in answered}
    heard = [db for p in answered for db in p["audio"].get("heard_db", {}).values()]
    absent = [
        db
        for p in answered
        for db in (p["audio"].get("own_db"), p["audio"].get("other_room_db"))
        if db is not None
    ]
    return {
        "mode": "speech" if speech else "tones",
        "checked": len(answered),
        "ok": sum(1 for found in problems.values() if not found),
        "quietest_heard_db": min(heard, default=None),
        "loudest_absent_db": max(absent, default=None),
        "heard_threshold_db": HEARD_DB,
        "absent_threshold_db": ABSENT_DB,
        "problems": [text for found in problems.values() for text in found][:50],
    }


def _participant(p: dict[str, Any], delays: list[dict[str, Any]]) -> dict[str, Any]:
    mine = [d["ms"] for d in delays if d["index"] == p["index"]]
    kept = {k: v for k, v in p.items() if k not in ("bursts_sent", "burst_onsets")}
    return {**kept, "bursts": len(p["bursts_sent"]), "delays_ms": mine}


# --- the bridge's side ------------------------------------------------------------------------


def _bridge(record: RunRecord) -> dict[str, Any]:
    first, last, drained = record.first[0], record.last[0], record.drained[0]
    sent = sum(sum(s["sent_by_call"].values()) for s in record.stopped)
    result: dict[str, Any] = {"metrics": first is not None and last is not None}
    if first is not None and last is not None:
        result["tick_lateness"] = lateness(first, last).as_dict()
        result["participants"] = last.get(PARTICIPANTS)
    if drained is not None:
        bridge_in = int(drained.get(PACKETS_IN))
        result["rtp_in"] = bridge_in
        result["generator_sent"] = sent
        result["rx_missing"] = sent - bridge_in
        # of those, what a shared RTP port dropped as from no call (a call's first packets
        # coming before its worker knew the call would land here)
        result["rtp_unmatched"] = int(drained.get(UNMATCHED))
    if first is not None and last is not None:  # at the window's end: streams still running
        # sequence numbers that never came in (RFC 3550 loss as the bridge counts it), and what
        # its jitter buffers did: ticks with no frame to play (concealed: late or lost) and
        # frames dropped to bound the delay (trimmed: a burst came); either is a glitch heard
        result["seq_gaps"] = int(last.get(PACKETS_LOST) - first.get(PACKETS_LOST))
        result["concealed"] = int(last.get(FRAMES_CONCEALED) - first.get(FRAMES_CONCEALED))
        result["trimmed"] = int(last.get(FRAMES_TRIMMED) - first.get(FRAMES_TRIMMED))
        # and before the window, since the bridge began: the ramp's glitches (calls joining)
        # for a bridge of the test's own
        result["before_window"] = {
            "concealed": int(first.get(FRAMES_CONCEALED)),
            "trimmed": int(first.get(FRAMES_TRIMMED)),
        }
        # the window's counts on both sides (the loss check above needs whole-run totals: a
        # window's edges catch packets in flight)
        result["window_rtp_in"] = int(last.get(PACKETS_IN) - first.get(PACKETS_IN))
        result["window_generator_sent"] = sum(s.get("window_sent", 0) for s in record.stopped)
    result["tick_stats"] = _tick_stats(record.bridge_events)
    result["warnings_logged"] = sum(
        1 for e in record.bridge_events if e.get("level") in ("warning", "error", "critical")
    )
    return result


def _tick_stats(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The rooms' own tick records, logged when a private bridge stops (whole run)."""
    rooms = [e for e in events if e.get("event") == "room.tick_stats"]
    stopped = next((e for e in events if e.get("event") == "bridge.stopped"), None)
    if not rooms:
        return None
    ticks = sum(e["ticks"] for e in rooms)
    return {
        "rooms": len(rooms),
        "ticks": ticks,
        "late_over_5ms": sum(e["late_over_5ms"] for e in rooms),
        "max_late_ms": max(e["max_late_ms"] for e in rooms),
        "mean_late_ms": sum(e["total_late_ms"] for e in rooms) / ticks if ticks else 0.0,
        "skipped_ticks": stopped["skipped_ticks"] if stopped else None,
    }


def _cpu(record: RunRecord, participants: int) -> dict[str, Any]:
    (_, cpu0, at0), (_, cpu1, at1) = record.first, record.last
    seconds = at1 - at0
    generator = sum(s.get("cpu_s", 0.0) for s in record.stopped)
    result: dict[str, Any] = {
        "seconds": seconds,
        "generator_s": generator,
        "generator_percent": 100.0 * generator / seconds if seconds > 0 else None,
        # sending wakes over 5 ms late: the generator, not the bridge, added that jitter
        "generator_late_wakes": sum(s.get("pacer_late_wakes", 0) for s in record.stopped),
        "generator_wakes": sum(s.get("pacer_wakes", 0) for s in record.stopped),
        "generator_max_late_ms": max(
            (s.get("pacer_max_late_ms", 0.0) for s in record.stopped), default=None
        ),
    }
    if cpu0 is not None and cpu1 is not None and seconds > 0:
        used = cpu1 - cpu0
        result["bridge_s"] = used
        result["bridge_percent"] = 100.0 * used / seconds
        if participants:
            result["bridge_s_per_participant_minute"] = used / (participants * seconds / 60.0)
            result["bridge_percent_per_participant"] = 100.0 * used / seconds / participants
            result["bridge_ms_per_participant_second"] = 1000.0 * used / seconds / participants
    if participants and seconds > 0:
        result["generator_ms_per_participant_second"] = 1000.0 * generator / seconds / participants
        if result.get("bridge_s"):
            result["generator_to_bridge"] = generator / result["bridge_s"]
    return result


def _tick_timeline(record: RunRecord) -> list[dict[str, Any]]:
    points = []
    pairs = zip(record.timeline, record.timeline[1:], strict=False)
    for (a, cpu_a, at_a), (b, cpu_b, at_b) in pairs:
        if a is None or b is None:
            continue
        late = lateness(a, b)
        cpu = (
            100.0 * (cpu_b - cpu_a) / (at_b - at_a)
            if cpu_a is not None and cpu_b is not None and at_b > at_a
            else None
        )
        points.append(
            {
                "t": at_b - record.start,
                "p50_ms": late.p50_ms,
                "p99_ms": late.p99_ms,
                "participants": b.get(PARTICIPANTS),
                "concealed": int(b.get(FRAMES_CONCEALED) - a.get(FRAMES_CONCEALED)),
                "trimmed": int(b.get(FRAMES_TRIMMED) - a.get(FRAMES_TRIMMED)),
                "bridge_cpu_percent": cpu,
                "scrape_ms": b.took_ms,
            }
        )
    return points


def _verdict(summary: dict[str, Any]) -> dict[str, Any]:
    calls, rtp, bridge = summary["calls"], summary["rtp"], summary["bridge"]
    late = bridge.get("tick_lateness", {}).get("p99_ms")
    checks = {
        "all_answered": calls["failed"] == 0,
        "none_ended_early": calls["ended_by_bridge_early"] == 0,
        "no_loss": rtp["lost"] == 0,
        "bridge_lossless": bridge.get("rx_missing", 0) <= 0,
        "audio_ok": summary["audio"]["ok"] == summary["audio"]["checked"],
    }
    # `ok` (the exit status) is about function; timing is reported, the benchmark judges it
    return {**checks, "ok": all(checks.values()), "tick_p99_under_5ms": late is None or late <= 5}


# --- outputs ----------------------------------------------------------------------------------


def write_outputs(summary: dict[str, Any], out: Path) -> dict[str, str]:
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": str(out / "loadtest.json")}
    files.update(write_plots(summary, out))
    Path(files["json"]).write_text(json.dumps({**summary, "files": files}, indent=1))
    return files


def write_plots(summary: dict[str, Any], out: Path) -> dict[str, str]:
    """Tick lateness and delay over time, loss per participant (PNG, no display needed)."""
    import matplotlib  # slow to import: only when plotting

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = {}
    ticks = summary["timeline"]["ticks"]
    fig, ax = plt.subplots(figsize=(9, 4))
    t = [p["t"] for p in ticks]
    ax.plot(t, [p["p50_ms"] for p in ticks], label="p50")
    ax.plot(t, [p["p99_ms"] for p in ticks], label="p99")
    ax.axhline(5.0, color="red", linestyle=":", label="5 ms")
    _shade_window(ax, summary)
    ax.set(xlabel="s since start", ylabel="tick lateness ms", title="Mixer tick lateness (1 s)")
    twin = ax.twinx()
    twin.plot(t, [p["participants"] for p in ticks], color="grey", alpha=0.5)
    twin.set_ylabel("participants")
    twin.set_ylim(bottom=0)
    ax.legend(loc="upper left")
    files["tick_lateness_png"] = _save(fig, out / "tick_lateness.png")

    delays = summary["timeline"]["delays"]
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.scatter([d["t"] for d in delays], [d["ms"] for d in delays], s=6)
    _shade_window(ax, summary)
    ax.set(xlabel="burst sent, s since start", ylabel="ms", title="Mouth-to-ear delay")
    files["delay_png"] = _save(fig, out / "delay.png")

    people = summary["participants"]
    fig, ax = plt.subplots(figsize=(9, 4))
    index = [p["index"] for p in people]
    ax.bar(index, [p["lost"] for p in people], label="lost")
    ax.bar(index, [p["late"] for p in people], bottom=[p["lost"] for p in people], label="late")
    ax.set(xlabel="participant", ylabel="packets", title="Loss and late packets per participant")
    ax.legend()
    files["loss_png"] = _save(fig, out / "loss.png")
    return files


def _shade_window(ax: Any, summary: dict[str, Any]) -> None:
    window = summary["window"]
    ax.axvspan(window["start_s"], window["end_s"], color="green", alpha=0.08, label="measured")


def _save(fig: Any, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return str(path)


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}{unit}" if abs(value) < 1000 else f"{value:.0f}{unit}"
    return f"{value}{unit}"


def summary_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    calls, rtp, delay = summary["calls"], summary["rtp"], summary["delay_ms"]
    audio, bridge, cpu = summary["audio"], summary["bridge"], summary["cpu"]
    ticks, before = bridge.get("tick_lateness", {}), bridge.get("before_window", {})
    return [
        ("participants / rooms", f"{calls['attempted']} / {summary['plan']['rooms']}"),
        ("calls answered", f"{calls['answered']} of {calls['attempted']}"),
        (
            "set-up ms p50 / max",
            f"{_fmt(calls['setup_ms']['p50'])} / {_fmt(calls['setup_ms']['max'])}",
        ),
        (
            "RTP received / lost / late (>40 ms), window",
            f"{rtp['window']['received']} / {rtp['window']['lost']} / {rtp['window']['late']}",
        ),
        (
            "RTP sent / received / lost / late, whole calls",
            f"{rtp['sent']} / {rtp['received']} / {rtp['lost']} / {rtp['late']}",
        ),
        ("jitter ms mean / max", f"{_fmt(rtp['jitter_ms_mean'])} / {_fmt(rtp['jitter_ms_max'])}"),
        (
            "delay ms p50 / p99 / max",
            f"{_fmt(delay['p50'])} / {_fmt(delay['p99'])} / {_fmt(delay['max'])}",
        ),
        ("bursts heard", f"{delay['count']} of {delay['expected']}"),
        ("audio ok", f"{audio['ok']} of {audio['checked']} ({audio['mode']})"),
        (
            "quietest heard / loudest absent dBFS",
            f"{_fmt(audio['quietest_heard_db'])} / {_fmt(audio['loudest_absent_db'])}",
        ),
        (
            "tick lateness ms p50 / p99",
            f"{_fmt(ticks.get('p50_ms'))} / {_fmt(ticks.get('p99_ms'))}",
        ),
        ("ticks late >5 ms", _fmt(ticks.get("over_5ms_fraction"))),
        (
            "bridge RTP in / generator sent, window",
            f"{_fmt(bridge.get('window_rtp_in'))} / {_fmt(bridge.get('window_generator_sent'))}",
        ),
        (
            "bridge RTP in / generator sent, whole run",
            f"{_fmt(bridge.get('rtp_in'))} / {_fmt(bridge.get('generator_sent'))}",
        ),
        ("bridge datagrams from no call (shared ports)", _fmt(bridge.get("rtp_unmatched"))),
        ("bridge sequence gaps in (RTP loss)", _fmt(bridge.get("seq_gaps"))),
        ("bridge jitter buffers: frames concealed", _fmt(bridge.get("concealed"))),
        ("bridge jitter buffers: frames trimmed", _fmt(bridge.get("trimmed"))),
        (
            "bridge jitter buffers before the window (the ramp): concealed / trimmed",
            "{} / {}".format(*(_fmt(before.get(k)) for k in ("concealed", "trimmed"))),
        ),
        ("bridge CPU %", _fmt(cpu.get("bridge_percent"))),
        ("bridge CPU s per participant-minute", _fmt(cpu.get("bridge_s_per_participant_minute"))),
        ("load generator CPU %", _fmt(cpu.get("generator_percent"))),
        (
            "CPU ms per participant-second, bridge / generator",
            f"{_fmt(cpu.get('bridge_ms_per_participant_second'))} / "
            f"{_fmt(cpu.get('generator_ms_per_participant_second'))}",
        ),
        (
            "generator send wakes >5 ms late / max ms (window)",
            f"{cpu['generator_late_wakes']} of {cpu['generator_wakes']} / "
            f"{_fmt(cpu['generator_max_late_ms'])}",
        ),
        ("verdict", _verdict_text(summary["verdict"])),
    ]


def _verdict_text(verdict: dict[str, bool]) -> str:
    failed = [name for name, passed in verdict.items() if name != "ok" and not passed]
    return "ok" if not failed else "not " + ", not ".join(failed)


def print_summary(summary: dict[str, Any]) -> None:
    table = Table(title=f"Load test, {summary['window']['seconds']:.0f} s measured")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name, value in summary_rows(summary):
        table.add_row(name, value)
    Console().print(table)
    for problem in summary["audio"]["problems"][:10]:
        print(f"  {problem}")
    for name, path in summary.get("files", {}).items():
        print(f"  {name}: {path}")
