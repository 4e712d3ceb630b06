"""Where a new room goes among the media workers (`room_worker`), spread or filling."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config import ConfigError, load_config
from bridge.mixing.workers.pool import room_worker


def test_spread_takes_the_least_loaded_running_worker() -> None:
    assert room_worker([(True, 5), (True, 2), (True, 3)], fill=0) == 1
    assert room_worker([(True, 5), (False, 0)], fill=0) == 0  # a (re)starting one last
    assert room_worker([(False, 0), (False, 4)], fill=0) == 0  # none running: still somewhere


def test_fill_takes_the_first_running_worker_under_the_mark() -> None:
    assert room_worker([(True, 2), (True, 0)], fill=3) == 0
    assert room_worker([(True, 3), (True, 0)], fill=3) == 1
    assert room_worker([(False, 0), (True, 1)], fill=3) == 1  # worker 0 restarting
    assert room_worker([(True, 9), (True, 4)], fill=3) == 1  # all full: the least loaded


def test_fill_workers_is_read_from_the_config_and_checked(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text("[media]\nfill_workers = 600\n")
    assert load_config(good, env={}).media.fill_workers == 600
    bad = tmp_path / "bad.toml"
    bad.write_text("[media]\nfill_workers = -1\n")
    with pytest.raises(ConfigError, match="fill_workers"):
        load_config(bad, env={})
