"""Aculab's largest reservation (seed 004: max_participants up to 350) filled by the load
generator: 350 simulated callers dial in over SIP and stream RTP, every one of them is listed
by conference_participant_list, and the 351st caller is refused (486 Busy Here).

The load generator is the one the benchmarks use (`python -m bridge.tools.loadgen`: one SIP
socket and one RTP socket for every call), driven here with its JSON-lines orders, at 20 calls a
second, with the rooms on 2 media worker processes as a bridge serving rooms this big runs
(mixed in the main process, on a 2-core machine shared with other work, a few call set-ups
outlasted the generator's 15 s)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bridge.tools.loadplan import PlanSpec, room_name
from bridge.tools.phone import Phone
from control.runtime import Runtime
from tests.integration.harness import LOOPBACK, FakeClock, eventually, loopback_config, with_control
from tests.integration.test_compat_aculab import aculab, app_token, http, reserve, state_of

pytestmark = [pytest.mark.integration, pytest.mark.heavy]

CAPACITY = 350


class LoadProcess:
    """One load generator process: orders in on stdin, JSON-line reports out."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.process: asyncio.subprocess.Process | None = None
        self.reader: asyncio.Task[None] | None = None

    async def start(self, orders: dict[str, Any]) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bridge.tools.loadgen",
            "asyncio",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
            limit=2**26,
        )
        self.reader = asyncio.create_task(self._read())
        await eventually(lambda: any(e["event"] == "ready" for e in self.events), timeout=30)
        self.send(orders)

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while line := await self.process.stdout.readline():
            self.events.append(json.loads(line))

    def send(self, message: dict[str, Any]) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write((json.dumps(message) + "\n").encode())

    def statuses(self) -> list[int]:
        return [e["status"] for e in self.events if e["event"] == "call"]

    async def close(self) -> None:
        if self.process is None:
            return
        if self.process.returncode is None:
            self.send({"cmd": "hangup"})
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self.reader is not None:
            await self.reader


async def test_350_callers_listed_and_the_351st_refused(tmp_path: Path) -> None:
    clock = FakeClock()
    # a range well over 350 calls: 400 ports ran out once (another bridge's range or other
    # sockets can overlap the random range)
    config = with_control(loopback_config(media_workers=2, rtp_ports=1000), tmp_path / "data")
    runtime = await Runtime(config, clock).start()
    spec = PlanSpec(rooms=1, per_room=CAPACITY, talkers=1, ramp=20.0, room_prefix="Big")
    name = room_name(spec, 0)
    load = LoadProcess()
    extra: Phone | None = None
    try:
        async with http(runtime) as client:
            auth = ("acme", await app_token(client, "acme"))
            reply = await reserve(client, auth, clock, name, max_participants=CAPACITY, duration=60)
            assert reply.status_code == 200, reply.text
            assert runtime.plane is not None
            clock.advance(minutes=10)
            runtime.plane.wake_scheduler()
            await eventually(lambda: state_of(runtime, name) == "HOLDING")

            orders = {
                "spec": spec.as_dict(),
                "indices": list(range(CAPACITY)),
                "host": LOOPBACK,
                "port": runtime.bridge.transports.udp_port,
                "start": time.monotonic() + 0.3,
                "worker": 0,
            }
            await load.start(orders)
            await eventually(lambda: len(load.statuses()) == CAPACITY, timeout=90)
            assert load.statuses() == [200] * CAPACITY, Counter(load.statuses())

            listed = await aculab(
                client, "conference_participant_list", auth, {"conference_name": name}
            )
            assert listed.status_code == 200, listed.text
            body = listed.json()
            assert body["status"] == "ACTIVE"
            people = body["participants"]
            assert len(people) == CAPACITY
            assert len({p["participant_id"] for p in people}) == CAPACITY
            assert all(p["muted"] is False and p["dtmf_enabled"] is True for p in people)

            extra = Phone(LOOPBACK, runtime.bridge.transports.udp_port, name, user="late")
            assert await extra.call() == 486  # the 351st
            again = await aculab(
                client, "conference_participant_list", auth, {"conference_name": name}
            )
            assert len(again.json()["participants"]) == CAPACITY
    finally:
        if extra is not None:
            await extra.close()
        await load.close()
        await runtime.stop()
