"""Check 1 of issue 17: the bridge behind Kamailio (Debian's package, configs/kamailio/), which
record-routes and dispatches calls to it.

A baresip softphone dials a room through the proxy; its hold re-INVITE crosses the proxy; the
API ejects it and the bridge's BYE is seen at Kamailio and ends baresip's call. SIPp callers
with 5 % of their messages lost complete their calls through the proxy.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from control.runtime import Runtime
from tests.integration.baresip import Baresip
from tests.integration.harness import (
    ADMIN_TOKEN,
    LOOPBACK,
    SCENARIOS,
    eventually,
    loopback_config,
    run_sipp,
    with_control,
)
from tests.integration.kamailio import Kamailio

pytestmark = pytest.mark.integration


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    running = await Runtime(with_control(loopback_config(), tmp_path / "data")).start()
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def proxy(runtime: Runtime, tmp_path: Path) -> AsyncIterator[Kamailio]:
    kamailio = Kamailio(tmp_path, runtime.bridge.transports.udp_port)
    await kamailio.start()
    try:
        yield kamailio
    finally:
        await kamailio.stop()


async def token(client: httpx.AsyncClient) -> dict[str, str]:
    reply = await client.post(
        "/v1/admin/applications/pbx/tokens", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert reply.status_code == 201, reply.text
    return {"Authorization": f"Bearer {reply.json()['token']}"}


def seen(proxy: Kamailio, method: str, source_port: int) -> int:
    return sum(
        1
        for seen_method, _uri, source in proxy.requests()
        if seen_method == method and source == f"{LOOPBACK}:{source_port}"
    )


async def test_baresip_through_kamailio_holds_and_is_ejected_by_the_api(
    runtime: Runtime, proxy: Kamailio, tmp_path: Path
) -> None:
    bridge = runtime.bridge
    bridge_port = bridge.transports.udp_port
    softphone = Baresip(tmp_path, tone_hz=1000)
    client = httpx.AsyncClient(base_url=runtime.base_url, trust_env=False)
    try:
        headers = await token(client)
        created = await client.post("/v1/conferences", json={"name": "proxied"}, headers=headers)
        assert created.status_code == 201, created.text
        await softphone.start()
        await softphone.dial(f"sip:proxied@{LOOPBACK}:{proxy.port}")
        await eventually(lambda: len(bridge.control.participants("proxied")) == 1)
        assert seen(proxy, "INVITE", softphone.sip_port) == 1
        # the ACK follows the route set through the proxy too
        await eventually(lambda: seen(proxy, "ACK", softphone.sip_port) == 1, 5.0)

        await softphone.command("/hold")
        await eventually(lambda: bridge.control.participants("proxied")[0].on_hold, 10.0)
        assert seen(proxy, "INVITE", softphone.sip_port) == 2  # the hold re-INVITE crossed it

        listed = await client.get("/v1/conferences/proxied/participants", headers=headers)
        (person,) = listed.json()
        mark = len(softphone.output)
        ejected = await client.delete(
            f"/v1/conferences/proxied/participants/{person['id']}", headers=headers
        )
        assert ejected.status_code == 204, ejected.text
        await softphone.wait_for("session closed", 10.0, mark)  # the BYE reached it
        assert seen(proxy, "BYE", bridge_port) == 1, proxy.requests()
    finally:
        await client.aclose()
        await softphone.stop()


async def test_sipp_callers_with_lost_messages_complete_through_kamailio(
    runtime: Runtime, proxy: Kamailio, tmp_path: Path
) -> None:
    scenario = ["-sf", str(SCENARIOS / "uac_through_proxy.xml"), "-s", "lossy", "-d", "500"]
    result = await run_sipp(
        proxy.port,
        [*scenario, "-m", "10", "-l", "3", "-r", "5", "-lost", "5"],
        tmp_path,
        timeout=90,
    )
    assert (result.successful, result.failed) == (10, 0), result.stderr[-2000:]
    assert seen(proxy, "BYE", runtime.bridge.transports.udp_port) == 0
    await eventually(lambda: runtime.bridge.control.participants("lossy") == [])
