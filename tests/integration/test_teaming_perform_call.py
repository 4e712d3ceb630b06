"""Teaming's "perform a call" (seed 002) through the dialect's own route: the user's line calls
a number (a SIPp callee behind the trunk that rings for a while), the call is listed under the
request's `callId` while it rings (ALERTING) and once answered (ACTIVE), HOLD and release; bad
requests in Teaming's error shape."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import httpx
import pytest

from control.runtime import Runtime
from tests.integration.harness import (
    ADMIN_TOKEN,
    LOOPBACK,
    SCENARIOS,
    SippResult,
    eventually,
    free_port,
    loopback_config,
    run_sipp,
    sipp_listening,
    with_control,
)

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}  # what `curl -d` sends


async def start(tmp_path: Path, trunk_port: int) -> Runtime:
    config = with_control(loopback_config(), tmp_path / "data")
    dialout = dataclasses.replace(config.dialout, trunk=f"{LOOPBACK}:{trunk_port}")
    return await Runtime(dataclasses.replace(config, dialout=dialout)).start()


async def ringing_callee(workdir: Path, port: int, ring_ms: int) -> asyncio.Task[SippResult]:
    """A SIPp callee (`uas_answer.xml`) that rings for `ring_ms` before it answers."""
    text = (SCENARIOS / "uas_answer.xml").read_text()
    assert '<pause milliseconds="200"/>' in text
    scenario = workdir / "uas_ring_then_answer.xml"
    scenario.write_text(text.replace('"200"/>', f'"{ring_ms}"/>', 1))
    args = ["-sf", str(scenario), "-m", "1"]
    task = asyncio.create_task(run_sipp(None, args, workdir, timeout=60, port=port))
    await sipp_listening(port)
    return task


async def test_perform_a_call_then_hold_and_release_it(tmp_path: Path) -> None:
    trunk_port = free_port()
    callee = await ringing_callee(tmp_path, trunk_port, 2500)
    runtime = await start(tmp_path, trunk_port)
    try:
        async with httpx.AsyncClient(base_url=runtime.base_url, trust_env=False) as client:
            reply = await client.post("/v1/admin/applications/acme/tokens", headers=ADMIN)
            user_id = reply.json()["application_id"]
            auth = {"Authorization": f"Bearer {reply.json()['token']}"}
            other = await client.post("/v1/admin/applications/globex/tokens", headers=ADMIN)
            other_auth = {"Authorization": f"Bearer {other.json()['token']}"}
            url = f"/teaming/users/{user_id}/calls"

            def error(reply: httpx.Response, status: int, code: int, starts: str) -> None:
                assert reply.status_code == status, reply.text
                body = reply.json()
                assert set(body) == {"code", "message", "description"} and body["code"] == code
                assert body["message"].startswith(starts), body

            # no conference yet: the user's line has nothing to call from
            body = {"calledNumber": "+33612345678"}
            error(await client.post(url, json=body, headers=auth), 400, 22, "conference:")
            made = await client.post("/v1/conferences", json={"name": "desk"}, headers=auth)
            assert made.status_code == 201

            error(await client.post(url, json={"calledNumber": "call me"}, headers=auth),
                  400, 22, "dest")  # fmt: skip
            error(await client.post(url, json={**body, "conference": "nope"}, headers=auth),
                  404, 60, "conference ")  # fmt: skip
            error(await client.post(url, json={**body, "colour": 1}, headers=auth),
                  400, 22, "colour: unknown field")  # fmt: skip
            error(await client.post(url, json=body, headers=other_auth), 404, 60, "user ")

            reply = await client.post(url, content=json.dumps(body), headers={**auth, **FORM})
            assert reply.status_code == 201, reply.text
            performed = reply.json()
            assert set(performed) == {"callId", "externalTrackingId"}
            call_id = performed["callId"]

            async def listed() -> list[dict[str, object]]:
                return list((await client.get(url, headers=auth)).json())

            (ringing,) = await listed()  # listed at once, while the callee rings
            assert ringing["callId"] == call_id and ringing["state"] == "ALERTING", ringing
            assert ringing["caller"] == "+33612345678" and ringing["conference"] == "desk"
            error(await client.put(f"{url}/{call_id}?action=HOLD", headers=auth),
                  409, 64, "callId: call ")  # fmt: skip
            for _ in range(100):
                if (await listed())[0]["state"] == "ACTIVE":
                    break
                await asyncio.sleep(0.1)
            (call,) = await listed()
            assert call["callId"] == call_id and call["state"] == "ACTIVE"
            assert call["conference"] == "desk"
            assert call["externalTrackingId"] != call_id  # the SIP Call-ID now

            hold = await client.put(f"{url}/{call_id}?action=HOLD", headers=auth)
            assert hold.status_code == 204, hold.text
            assert (await listed())[0]["state"] == "HELD"
            released = await client.delete(f"/teaming/v1{url[8:]}/{call_id}", headers=auth)
            assert released.status_code == 204, released.text
            result = await asyncio.wait_for(callee, 30)
            assert result.successful == 1, result.stderr[-800:]
            await eventually(lambda: runtime.bridge.control.participants("desk") == [])

            # released while it still rings: the bridge cancels it
            args = ["-sf", str(SCENARIOS / "uas_no_answer.xml"), "-m", "1"]
            callee = asyncio.create_task(
                run_sipp(None, args, tmp_path, timeout=60, port=trunk_port)
            )
            await sipp_listening(trunk_port)
            reply = await client.post(url, json=body, headers=auth)
            assert reply.status_code == 201, reply.text
            unanswered = reply.json()["callId"]
            assert [c["state"] for c in await listed()] == ["ALERTING"]
            released = await client.delete(f"{url}/{unanswered}", headers=auth)
            assert released.status_code == 204, released.text
            result = await asyncio.wait_for(callee, 30)
            assert result.successful == 1, result.stderr[-800:]  # it got our CANCEL
            assert await listed() == []
            error(await client.delete(f"{url}/{unanswered}", headers=auth), 404, 60, "call ")
    finally:
        if not callee.done():
            callee.cancel()
        await runtime.stop()
