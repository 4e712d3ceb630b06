"""Issue 15, check 3: a SIPp guesser loops over room codes from 127.0.0.1; after
`security.code_lockout_attempts` wrong codes its calls are refused with 403, a
`security.code_lockout` event is published and /metrics counts it all, while a caller from
127.0.0.2 with the right code still gets in."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import httpx
import pytest

from bridge.config import SecurityConfig
from bridge.events import BridgeEvent, CodeLockout
from bridge.tools.phone import Phone
from control.runtime import Runtime
from tests.integration.harness import (
    ADMIN_TOKEN,
    LOOPBACK,
    SCENARIOS,
    eventually,
    loopback_config,
    run_sipp,
    with_control,
)

pytestmark = pytest.mark.integration

CODE = "424242"


def metric(text: str, name: str) -> float:
    line = next(row for row in text.splitlines() if row.startswith(name + " "))
    return float(line.split()[1])


async def test_a_code_guesser_is_locked_out_and_the_right_code_still_works(
    tmp_path: Path,
) -> None:
    config = with_control(loopback_config(), tmp_path / "data")
    config = dataclasses.replace(config, security=SecurityConfig(code_lockout_attempts=10))
    runtime = await Runtime(config).start()
    seen: list[BridgeEvent] = []
    runtime.bridge.events.subscribe(seen.append)
    port = runtime.bridge.transports.udp_port
    member = Phone(LOOPBACK, port, "board", user="+15550123", local_host="127.0.0.2")
    try:
        async with httpx.AsyncClient(base_url=runtime.base_url, trust_env=False) as client:
            admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            made = await client.post("/v1/admin/applications/acme/tokens", headers=admin)
            acme = {"Authorization": f"Bearer {made.json()['token']}"}
            reply = await client.post(
                "/v1/conferences", json={"name": "board", "access": "room", "code": CODE},
                headers=acme,
            )  # fmt: skip
            assert reply.status_code == 201, reply.text

            # 3 wrong codes a call, 6 calls: the 10th wrong code (4th call) locks it out
            workdir = tmp_path / "sipp"
            workdir.mkdir()
            scenario = ["-sf", str(SCENARIOS / "uac_guess_codes.xml"), "-s", "board"]
            result = await run_sipp(port, [*scenario, "-m", "6", "-l", "1"], workdir, 90)
            assert (result.successful, result.failed) == (6, 0), result.stdout + result.stderr

            lockouts = [e for e in seen if isinstance(e, CodeLockout)]
            assert [(e.scope, e.source, e.room, e.attempts) for e in lockouts] == [
                ("source", LOOPBACK, "board", 10)
            ]
            text = (await client.get("/metrics")).text
            assert metric(text, "confbridge_code_wrong_total") == 10
            assert metric(text, "confbridge_code_lockouts_total") == 1
            assert metric(text, "confbridge_code_lockout_refusals_total") == 2  # calls 5 and 6

            # the right code from another source still works
            assert await member.call() == 200
            for key in f"{CODE}#":
                assert await member.send_info(key) == 200
            await eventually(lambda: len(runtime.bridge.control.participants("board")) == 1)
            # ...and the guesser's source, with the right code, is still refused
            guesser = Phone(LOOPBACK, port, "board", user="guesser")
            assert await guesser.call() == 403
            await guesser.close()
            assert not [e for e in seen if isinstance(e, CodeLockout)][1:]
    finally:
        await member.close()
        await runtime.stop()
        await asyncio.sleep(0)
