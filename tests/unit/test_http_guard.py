"""The failed-authentication limiter of the HTTP layer, with a chosen clock."""

from __future__ import annotations

import pytest

from control.api import guard
from control.api.guard import FailureLimiter


def test_a_source_is_blocked_at_the_limit_within_the_window_then_freed() -> None:
    limiter = FailureLimiter(limit=3, window_s=60.0, block_s=100.0)
    for moment in (0.0, 10.0):
        limiter.failed("10.0.0.1", moment)
    assert limiter.blocked_for("10.0.0.1", 11.0) == 0.0
    limiter.failed("10.0.0.1", 20.0)
    assert limiter.blocked_for("10.0.0.1", 30.0) == pytest.approx(90.0)
    assert limiter.blocked_for("10.0.0.2", 30.0) == 0.0
    assert limiter.blocked_for("10.0.0.1", 120.0) == 0.0  # served again, counting afresh
    limiter.failed("10.0.0.1", 121.0)
    assert limiter.blocked_for("10.0.0.1", 122.0) == 0.0
    assert limiter.blocked_total == 1


def test_old_failures_leave_the_window() -> None:
    limiter = FailureLimiter(limit=3, window_s=60.0, block_s=100.0)
    for moment in (0.0, 50.0, 100.0, 150.0):
        limiter.failed("10.0.0.1", moment)
    assert limiter.blocked_for("10.0.0.1", 151.0) == 0.0


def test_memory_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(guard, "MAX_SOURCES", 10)
    limiter = FailureLimiter(limit=100, window_s=60.0, block_s=100.0)
    for n in range(100):
        limiter.failed(f"10.0.0.{n}", 0.0)
    assert len(limiter._failures) <= 10
