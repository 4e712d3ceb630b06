"""The load tool's own test (issue 7, checks 1 and 3): a small run must measure a clean bridge
as clean, with every figure in the JSON file, and the capacity benchmark must run end to end.

Both run as the commands people type (`scripts/loadtest.py`, `scripts/bench.py --quick`): each
starts its own private bridge on free loopback ports and its own load process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.heavy]

REPO = Path(__file__).resolve().parents[2]
HEARD_DB = -30.0
ABSENT_DB = -50.0
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run_script(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def loadtest(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("loadtest")
    done = run_script(
        "scripts/loadtest.py",
        *("--rooms", "2", "--per-room", "5", "--talkers", "2", "--duration", "10"),
        *("--out", str(out), "--no-progress"),
        timeout=90,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Load test" in done.stdout  # the summary table
    return json.loads((out / "loadtest.json").read_text())


def test_every_call_streams_without_loss(loadtest: dict) -> None:
    calls, rtp, bridge = loadtest["calls"], loadtest["rtp"], loadtest["bridge"]
    assert calls["attempted"] == calls["answered"] == 10
    assert 0 < calls["setup_ms"]["p50"] <= calls["setup_ms"]["max"] < 5000
    assert rtp["lost"] == 0 and rtp["sent"] > 10 * 450  # 10 s at 50 packets/s, each
    assert bridge["rx_missing"] == 0 and bridge["rtp_in"] == bridge["generator_sent"]
    # the calls' counts over the window alone: 10 s of 50 packets a second each, nothing lost
    window = rtp["window"]
    assert 10 * 450 < window["received"] <= 10 * 510 and window["lost"] == 0, window
    assert window["received"] < rtp["received"] and window["late"] <= rtp["late"]
    for p in loadtest["participants"]:
        assert p["status"] == 200 and p["lost"] == 0, p
        assert p["received"] > 450 and p["sent"] > 450, p
        assert 0 <= p["jitter_ms"] < 40, p


def test_every_listener_hears_exactly_its_rooms_talkers(loadtest: dict) -> None:
    tones = loadtest["plan"]["tones_hz"]
    rooms = sorted({p["room"] for p in loadtest["participants"]})
    assert len(rooms) == 2 and loadtest["audio"]["ok"] == 10
    for p in loadtest["participants"]:
        audio = p["audio"]
        assert audio["samples"] >= 0.8 * 8000 * loadtest["window"]["analysis_seconds"]
        mates = {f for f in tones[rooms.index(p["room"])] if f != p["tone_hz"]}
        assert {int(f) for f in audio["heard_db"]} == mates, p
        assert all(db > HEARD_DB for db in audio["heard_db"].values()), p
        assert audio["other_room_db"] < ABSENT_DB, p
        if p["tone_hz"] is not None:
            assert audio["own_db"] < ABSENT_DB, p


def test_delay_and_bridge_figures_are_measured(loadtest: dict) -> None:
    delay = loadtest["delay_ms"]
    assert delay["expected"] >= 2 * 4 * 3  # 2 rooms, 4 listeners each, bursts every 2 s
    assert delay["count"] == delay["expected"]
    assert 0 < delay["min"] <= delay["p50"] <= delay["max"] < 200
    ticks = loadtest["bridge"]["tick_lateness"]
    assert ticks["ticks"] >= 9 * 50  # ~50 ticks a second over the 10 s window
    assert 0 <= ticks["p50_ms"] <= ticks["p99_ms"]
    assert loadtest["bridge"]["participants"] == 10
    assert loadtest["bridge"]["tick_stats"]["rooms"] == 2
    cpu = loadtest["cpu"]
    assert 9.5 < cpu["seconds"] < 12 and 0 < cpu["bridge_s_per_participant_minute"] < 10
    points = loadtest["timeline"]["ticks"]
    assert len(points) >= 8
    # the bridge's glitches second by second, and before the window (the calls joining)
    assert all(p["concealed"] >= 0 and p["trimmed"] >= 0 for p in points)
    before = loadtest["bridge"]["before_window"]
    assert isinstance(before["concealed"], int) and isinstance(before["trimmed"], int)
    assert before["concealed"] >= 0 and before["trimmed"] >= 0


def test_json_and_plots_are_written(loadtest: dict) -> None:
    files = loadtest["files"]
    for key in ("tick_lateness_png", "delay_png", "loss_png"):
        data = Path(files[key]).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5000, key
    assert json.loads(Path(files["json"]).read_text())["calls"]["answered"] == 10


def test_capacity_benchmark_quick_prints_its_table(tmp_path: Path) -> None:
    done = run_script("scripts/bench.py", "--quick", "--out", str(tmp_path), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if "tick p99 ms" in line)
    table = lines[header + 2 :]
    rows = [line.split() for line in table[: table.index("")]]
    # both scenarios with 1 media worker, then with 2 (the default --workers 1,2); a step that
    # fails on a busy machine ends its scenario early, so steps per scenario may be 1 or 2
    scenarios = [(r[0], next(word for word in r if word in ("1w", "2w"))) for r in rows]
    assert scenarios[0] == ("rooms", "1w") and scenarios[-1] == ("one", "2w"), done.stdout
    assert [s for s in scenarios if s[0] == "one"] == [("one", "1w"), ("one", "2w")], done.stdout
    assert scenarios == sorted(scenarios, key=lambda s: s[1]), done.stdout
    assert {s for s in scenarios if s[0] == "rooms"} == {("rooms", "1w"), ("rooms", "2w")}
    assert len(rows) <= 6
    for workers in (1, 2):
        assert any(
            line.startswith(f"{workers} media worker(s): largest load held: ") for line in lines
        ), done.stdout
    assert len(list(tmp_path.glob("*/loadtest.json"))) == len(rows)
    assert "gen ms / part-s" in lines[header]  # the load generator's cost per participant


def test_codec_rooms_benchmark_prints_a_figure_per_codec_and_scenario() -> None:
    done = run_script("scripts/bench.py", "--codecs", "--seconds", "0.2", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line.split() for line in done.stdout.splitlines()[1:] if line.strip()]
    assert [(r[0], r[1]) for r in rows] == [
        (room, first) for room in ("PCMU", "G722", "OPUS", "mixed") for first in ("all", "2")
    ], done.stdout
    assert all(float(r[-2]) > 0 for r in rows), done.stdout


def test_pesq_through_rooms_g722_within_a_tenth_of_the_codec_alone() -> None:
    """Check 2 of the wideband issue, in process: PESQ (P.862.2) of espeak-ng's speech through
    a G.722 room against G.722 alone, and Opus at 10 % loss with FEC intelligible (>= 2.5) and
    as good through the room as alone; the other rows are printed for the note."""
    done = run_script("scripts/pesq_rooms.py", timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {line[:34].strip(): line[34:].split() for line in done.stdout.splitlines()[1:]}
    alone, room = (float(v) for v in rows["G.722 (P.862.2)"])
    assert room > alone - 0.1, done.stdout
    alone, room = (float(v) for v in rows["Opus, 10% loss, FEC on"])
    assert room > alone - 0.1 and room >= 2.5, done.stdout  # check 3, in process
    assert len(rows) == 5 and all(1.0 <= float(r[-1]) <= 4.7 for r in rows.values()), done.stdout
