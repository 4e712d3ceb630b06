"""Issue 15, check 2: one source (SIPp on 127.0.0.1) sends 1,000 INVITEs a second for 10 s
while a second source (127.0.0.2) sets up 10 calls a second and 3 phones (127.0.0.3) talk. The
per-source limit (`security.new_dialogs_per_s`) sheds the flood with 503s: the second source's
calls all succeed, the phones' mix-minus holds (FFT), and the flooder gets only its burst plus
the sustained rate. The figures (set-up times idle and under flood, the flooder's share, CPU of
this process, which runs the bridge and the phones) are printed for the issue's note."""

from __future__ import annotations

import asyncio
import dataclasses
import resource
import statistics
import time
from pathlib import Path

import pytest

from bridge.config import SecurityConfig
from bridge.events import BridgeEvent, ParticipantJoined
from bridge.media.tones import tone_levels
from bridge.tools.phone import Phone
from control.runtime import Runtime
from tests.integration.harness import (
    LOOPBACK,
    SCENARIOS,
    loopback_config,
    run_sipp,
    with_control,
)

pytestmark = [pytest.mark.integration, pytest.mark.heavy]

HEARD_DB = -30.0
ABSENT_DB = -50.0
TONES = (440.0, 1000.0, 1700.0)
RATE, BURST = 10, 50
FLOOD_CPS, FLOOD_S = 1000, 10


async def timed_call(port: int, n: int) -> float:
    """Set up one call from 127.0.0.2 and hang it up; its set-up time in seconds."""
    caller = Phone(LOOPBACK, port, "second", user=f"second{n}", local_host="127.0.0.2")
    started = time.perf_counter()
    try:
        status = await caller.call()
        assert status == 200, status
        return time.perf_counter() - started
    finally:
        await caller.hangup()
        await caller.close()


async def second_source(port: int, calls: int) -> list[float]:
    """`calls` calls at 10 a second, each in its own task."""
    tasks = []
    for n in range(calls):
        tasks.append(asyncio.create_task(timed_call(port, n)))
        await asyncio.sleep(0.1)
    return list(await asyncio.gather(*tasks))


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def test_a_flood_from_one_source_is_shed_and_the_rest_carry_on(tmp_path: Path) -> None:
    config = with_control(loopback_config(), tmp_path / "data")
    security = SecurityConfig(new_dialogs_per_s=RATE, new_dialogs_burst=BURST, allow=())
    runtime = await Runtime(dataclasses.replace(config, security=security)).start()
    joined: list[BridgeEvent] = []
    runtime.bridge.events.subscribe(
        lambda e: joined.append(e) if isinstance(e, ParticipantJoined) else None
    )
    port = runtime.bridge.transports.udp_port
    loop = asyncio.get_running_loop()
    talkers = [
        Phone(LOOPBACK, port, "talk", tone_hz=t, user=f"talker{int(t)}", local_host="127.0.0.3")
        for t in TONES
    ]
    try:
        for phone in talkers:
            assert await phone.call() == 200
        idle = await second_source(port, 10)

        workdir = tmp_path / "flood"
        workdir.mkdir()
        sent = FLOOD_CPS * FLOOD_S
        flood_args = ["-sf", str(SCENARIOS / "uac_flood.xml"), "-s", "flood",
                      "-r", str(FLOOD_CPS), "-m", str(sent), "-l", "2000"]  # fmt: skip
        cpu_before, wall_before = cpu_seconds(), time.perf_counter()
        flood = asyncio.create_task(run_sipp(port, flood_args, workdir, timeout=60))
        await asyncio.sleep(0.5)
        during = await second_source(port, 10 * (FLOOD_S - 2))
        listen_until = loop.time()
        result = await flood
        cpu = (cpu_seconds() - cpu_before) / (time.perf_counter() - wall_before)

        # the 3 phones kept their mix-minus through the flood
        for phone, own in zip(talkers, TONES, strict=True):
            heard = tone_levels(phone.audio(listen_until - 3.0, listen_until), TONES)
            for tone in TONES:
                if tone == own:
                    assert heard[tone] < ABSENT_DB, (phone.user, heard)
                else:
                    assert heard[tone] > HEARD_DB, (phone.user, heard)

        flooder = sum(1 for e in joined if e.caller == "flooder")  # type: ignore[attr-defined]
        stats = runtime.bridge.control.stats()
        print(
            f"\nflood: {sent} INVITEs sent, SIPp ok {result.successful} failed "
            f"{result.failed}; flooder joined {flooder} ({100 * flooder / sent:.1f} %), "
            f"shed {stats.flood_limited}; set-up idle median "
            f"{statistics.median(idle) * 1000:.1f} ms max {max(idle) * 1000:.1f} ms, during flood "
            f"median {statistics.median(during) * 1000:.1f} ms max {max(during) * 1000:.1f} ms; "
            f"CPU of this process (bridge + phones) {100 * cpu:.0f} % of a core"
        )
        assert len(during) == 10 * (FLOOD_S - 2)  # every call of the second source succeeded
        # the flooder gets its burst and the sustained rate over the flood, no more
        assert flooder <= BURST + RATE * (FLOOD_S + 5)
        assert stats.flood_limited >= sent * 0.8
        assert stats.flood_sources >= 1
        assert statistics.median(during) < max(1.0, 5 * statistics.median(idle))
    finally:
        for phone in talkers:
            await phone.hangup()
            await phone.close()
        await runtime.stop()
