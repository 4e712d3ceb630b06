"""The NAT items of issue 17 on a running bridge: OPTIONS keep-alives in established calls
(a caller that answers 481 has its call ended, no BYE) and double-CRLF pings on TCP."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bridge.server import BridgeServer
from tests.integration.harness import LOOPBACK, SCENARIOS, eventually, loopback_config, run_sipp

pytestmark = pytest.mark.integration


async def test_options_keepalive_ends_a_call_the_caller_forgot(tmp_path: Path) -> None:
    config = loopback_config(sip={"keepalive_options_s": 1}, rtp={"timeout_s": 3600})
    bridge = await BridgeServer(config).start()
    try:
        scenario = ["-sf", str(SCENARIOS / "uac_keepalive_481.xml"), "-s", "kept", "-m", "1"]
        sipp = asyncio.create_task(run_sipp(bridge.transports.udp_port, scenario, tmp_path, 30))
        await eventually(lambda: len(bridge.control.participants("kept")) == 1)
        result = await sipp
        assert (result.successful, result.failed) == (1, 0), result.stderr[-1500:]
        await eventually(lambda: bridge.control.participants("kept") == [], 5)
    finally:
        await bridge.stop()


async def test_crlf_pings_on_tcp_connections() -> None:
    bridge = await BridgeServer(loopback_config(sip={"keepalive_crlf_s": 1})).start()
    try:
        reader, writer = await asyncio.open_connection(LOOPBACK, bridge.transports.tcp_port)
        ping = await asyncio.wait_for(reader.readexactly(4), 5)
        assert ping == b"\r\n\r\n"
        writer.close()
    finally:
        await bridge.stop()
