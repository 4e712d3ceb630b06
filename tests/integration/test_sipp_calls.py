"""Check 2 of the dial-in issue: real SIPp calls against the running bridge on loopback."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bridge.server import BridgeServer
from tests.integration.harness import SCENARIOS, loopback_config, run_sipp

pytestmark = pytest.mark.integration


async def watch_room(server: BridgeServer, room: str, stop: asyncio.Event) -> int:
    """The most participants seen in `room` while SIPp runs."""
    most = 0
    while not stop.is_set():
        most = max(most, len(server.control.participants(room)))
        await asyncio.sleep(0.05)
    return most


async def test_twenty_sequential_calls(bridge: BridgeServer, tmp_path: Path) -> None:
    result = await run_sipp(
        bridge.transports.udp_port,
        ["-sn", "uac", "-s", "seq", "-m", "20", "-l", "1", "-r", "50"],
        tmp_path,
    )
    assert (result.successful, result.failed) == (20, 0), result.stderr
    assert result.returncode == 0
    assert bridge.core is not None and "seq" not in bridge.core.rooms  # all left


async def test_ten_concurrent_calls_share_a_room(bridge: BridgeServer, tmp_path: Path) -> None:
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_room(bridge, "conc", stop))
    result = await run_sipp(
        bridge.transports.udp_port,
        ["-sn", "uac", "-s", "conc", "-m", "10", "-l", "10", "-r", "100", "-d", "2000"],
        tmp_path,
    )
    stop.set()
    assert (result.successful, result.failed) == (10, 0), result.stderr
    assert await watcher == 10


@pytest.mark.parametrize("limit", ["1", "10"])
async def test_calls_complete_with_ten_percent_loss(
    bridge: BridgeServer, tmp_path: Path, limit: str
) -> None:
    result = await run_sipp(
        bridge.transports.udp_port,
        ["-sn", "uac", "-s", "lossy", "-m", "20", "-l", limit, "-r", "20", "-lost", "10"],
        tmp_path,
        timeout=180,
    )
    assert (result.successful, result.failed) == (20, 0), result.stderr


async def test_call_over_tcp(bridge: BridgeServer, tmp_path: Path) -> None:
    assert bridge.transports.tcp_port == bridge.transports.udp_port
    result = await run_sipp(
        bridge.transports.tcp_port,
        ["-sn", "uac", "-s", "tcp", "-t", "t1", "-m", "3", "-l", "1"],
        tmp_path,
    )
    assert (result.successful, result.failed) == (3, 0), result.stderr


async def test_cancel_before_answer_gets_487(tmp_path: Path) -> None:
    config = loopback_config(sip={"answer_delay_ms": 3000})
    server = await BridgeServer(config).start()
    try:
        result = await run_sipp(
            server.transports.udp_port,
            ["-sf", str(SCENARIOS / "uac_cancel.xml"), "-s", "cancelled", "-m", "3", "-l", "1"],
            tmp_path,
        )
        assert (result.successful, result.failed) == (3, 0), result.stderr
        assert server.core is not None
        assert "cancelled" not in server.core.rooms
        assert not server.core.legs
    finally:
        await server.stop()
