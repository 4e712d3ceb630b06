"""The CI pass of the fuzzers: every target of scripts/fuzz.py for 5 seconds (30 in all),
seeded with real messages; 0 crashes. The 10-minute runs are `scripts/fuzz.py --seconds 600`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.heavy
def test_every_fuzz_target_runs_without_a_crash(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "fuzz.py"), "--seconds", "5",
         "--artifacts", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line.split() for line in done.stdout.splitlines()[1:]]
    assert [row[0] for row in rows] == ["sip", "flood", "sdp", "rtp", "rfc4733", "api"]
    assert all(int(row[2]) > 100 and row[3:] == ["0", "crashes"] for row in rows), done.stdout
    assert list(tmp_path.iterdir()) == []  # no crash input written
