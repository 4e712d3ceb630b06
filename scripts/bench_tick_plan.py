"""The vectorised tick's plan step alone (`VectorTick._plan`: talking detection, who
contributes, who hears which row), repeated on one tick's inputs, in CPU time.

Why its own script: the plan is a few percent of the tick, under `bench_vector_tick.py`'s
noise, so a change to it is measured here, the best of many repeats. Not a test.

    .venv/bin/python scripts/bench_tick_plan.py [--layouts 50x10 200x10 1x350]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import bridge  # noqa: F401 - first: one BLAS thread, as the bridge runs (see bridge/__init__.py)

# isort: split
import bench_vector_tick as world
from bench_common import print_table

from bridge.mixing.vector.tick import VectorTick

WARM_TICKS = 30
REPEATS = 30
CALLS = 50


def plan_seconds(rooms_count: int, size: int) -> float:
    """Best mean CPU seconds of one `_plan` call over REPEATS rounds of CALLS calls."""
    made, feeds = world.build(rooms_count, size, 3 if size > 10 else 2)
    vector = VectorTick()
    captured: dict[str, Any] = {}
    plan = vector._plan

    def keep_inputs(*args: Any) -> Any:
        captured["args"] = args
        return plan(*args)

    vector._plan = keep_inputs  # type: ignore[method-assign]
    for tick in range(WARM_TICKS):
        for member, sender, payloads in feeds:
            packet = sender.packet(payloads[tick % world.LOOP])
            member.receive_rtp(packet, member.remote, tick * 0.02)
        vector.tick(made)
    args = captured["args"]
    best = float("inf")
    for _ in range(REPEATS):
        started = time.process_time()
        for _ in range(CALLS):
            plan(*args)
        best = min(best, (time.process_time() - started) / CALLS)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layouts", nargs="+", default=["50x10", "200x10", "1x350"])
    args = parser.parse_args()
    rows = []
    for layout in args.layouts:
        rooms_count, size = map(int, layout.split("x"))
        seconds = plan_seconds(rooms_count, size)
        members = rooms_count * size
        rows.append((layout, round(seconds * 1e6, 1), round(seconds * 1e9 / members)))
    print_table(("layout", "_plan us per tick", "ns per member"), rows)


if __name__ == "__main__":
    main()
