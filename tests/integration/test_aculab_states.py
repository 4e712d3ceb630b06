"""Aculab (seed 004) conference states as the document defines them, through the dialect's own
routes with scripted phones: a reservation with a named leader walks RESERVED, HOLDING (empty,
then one caller who is not the leader), ACTIVE (leader + 1), HOLDING again as people leave,
ACTIVE again, and COMPLETED at its end; and the new `leader` parameter's bad input."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge.tools.phone import Phone
from control.runtime import Runtime
from tests.integration.harness import FakeClock, eventually
from tests.integration.test_compat_aculab import (
    aculab,
    app_token,
    assert_error,
    http,
    listing,
    phone,
    reserve,
    start,
    state_of,
)

pytestmark = pytest.mark.integration


async def status(client: httpx.AsyncClient, auth: tuple[str, str], name: str) -> str:
    return str((await listing(client, auth))[name]["status"])


async def test_state_sequence_over_a_whole_reservation(tmp_path: Path) -> None:
    clock = FakeClock()
    runtime = await start(tmp_path, clock)
    phones: list[Phone] = []
    try:
        async with http(runtime) as client:
            auth = ("acme", await app_token(client, "acme"))
            reply = await reserve(client, auth, clock, "Board", leader="+4930111", duration=15)
            assert reply.status_code == 200, reply.text
            entry = (await listing(client, auth))["Board"]
            assert entry["status"] == "RESERVED" and entry["leader"] == "+4930111"
            assert runtime.plane is not None

            async def becomes(expected: str) -> None:
                runtime.plane.wake_scheduler()  # type: ignore[union-attr]
                await eventually(lambda: state_of(runtime, "Board") == expected)
                assert await status(client, auth, "Board") == expected

            clock.advance(minutes=10)  # the start: nobody in yet
            await becomes("HOLDING")

            guest = phone(runtime, "Board", "+4930222", tone=440.0)
            phones.append(guest)
            assert await guest.call() == 200
            await eventually(lambda: len(runtime.bridge.control.participants("Board")) == 1)
            await becomes("HOLDING")  # one participant, not the leader

            other = phone(runtime, "Board", "+4930333", tone=880.0)
            phones.append(other)
            assert await other.call() == 200
            await eventually(lambda: len(runtime.bridge.control.participants("Board")) == 2)
            await asyncio.sleep(0.3)
            await becomes("HOLDING")  # two, but without the leader

            leader = phone(runtime, "Board", "+4930111", tone=1000.0)
            phones.append(leader)
            assert await leader.call() == 200
            await becomes("ACTIVE")  # leader + others

            await leader.hangup()
            await becomes("HOLDING")  # the leader left
            leader = phone(runtime, "Board", "+4930111", tone=1000.0)
            phones.append(leader)
            assert await leader.call() == 200
            await becomes("ACTIVE")

            await other.hangup()
            await becomes("ACTIVE")  # leader + 1 is still two or more
            await guest.hangup()
            await becomes("HOLDING")  # the leader alone: fewer than two

            clock.advance(minutes=15)  # the end
            await becomes_completed(runtime, client, auth)
            await eventually(lambda: leader.ended_by_bridge, timeout=10)
    finally:
        for one in phones:
            await one.hangup()
        await runtime.stop()


async def becomes_completed(
    runtime: Runtime, client: httpx.AsyncClient, auth: tuple[str, str]
) -> None:
    assert runtime.plane is not None
    runtime.plane.wake_scheduler()
    await eventually(lambda: state_of(runtime, "Board") in (None, "COMPLETED"))
    entries: dict[str, Any] = await listing(client, auth)
    assert entries["Board"]["status"] == "COMPLETED"  # listed for a day after its end


@pytest.mark.parametrize("leader", ["a b", "x" * 65, "<sip:boss>", "+"])
async def test_bad_leader_gets_0002(tmp_path: Path, leader: str) -> None:
    clock = FakeClock()
    runtime = await start(tmp_path, clock)
    try:
        async with http(runtime) as client:
            auth = ("acme", await app_token(client, "acme"))
            reply = await reserve(client, auth, clock, "Board", leader=leader)
            assert_error(reply, 400, "0002", "leader")
            assert "Board" not in await listing(client, auth)
            empty = await aculab(client, "conference_list", auth)
            assert empty.json() == []
    finally:
        await runtime.stop()
