"""Check 2 of issue 17: RFC 4028 session timers against SIPp callers.

Four callers run at once: one asks the bridge to refresh (through Kamailio, so the bridge's
UPDATE also crosses the proxy: check 1), one refreshes itself by UPDATE, one never refreshes
and must get the bridge's BYE when the session expires (60 s for a 90 s interval), and one asks
for an interval below the minimum and gets 422 with Min-SE. 90 s is RFC 4028's smallest
interval, so this test takes about a minute.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.server import BridgeServer
from tests.integration.harness import LOOPBACK, SCENARIOS, SippResult, loopback_config, run_sipp
from tests.integration.kamailio import Kamailio

pytestmark = pytest.mark.integration


async def timed_sipp(
    port: int, scenario: str, room: str, workdir: Path, *extra: str
) -> tuple[SippResult, float]:
    workdir.mkdir()
    loop = asyncio.get_running_loop()
    started = loop.time()
    args = ["-sf", str(SCENARIOS / scenario), "-s", room, "-m", "1", "-l", "1", *extra]
    result = await run_sipp(port, args, workdir, timeout=100)
    return result, loop.time() - started


@pytest.fixture
async def bridge() -> AsyncIterator[BridgeServer]:
    """The callers send no RTP: the RTP timeout must not end their calls before the timers."""
    server = await BridgeServer(loopback_config(rtp={"timeout_s": 3600})).start()
    try:
        yield server
    finally:
        await server.stop()


async def test_session_timers_refresh_expiry_and_422(bridge: BridgeServer, tmp_path: Path) -> None:
    port = bridge.transports.udp_port
    proxy = Kamailio(tmp_path, port)
    await proxy.start()
    try:
        (uas, _), (uac, _), (silent, silent_s), (small, _) = await asyncio.gather(
            timed_sipp(proxy.port, "uac_timer_uas_refreshes.xml", "timers", tmp_path / "uas"),
            timed_sipp(
                port, "uac_timer_uac_refreshes.xml", "timers", tmp_path / "uac", "-d", "5000"
            ),
            timed_sipp(port, "uac_timer_no_refresh.xml", "timers", tmp_path / "silent"),
            timed_sipp(port, "uac_timer_422.xml", "timers", tmp_path / "small"),
        )
    finally:
        await proxy.stop()
    for name, result in (("uas", uas), ("uac", uac), ("silent", silent), ("422", small)):
        assert (result.successful, result.failed) == (1, 0), (name, result.stderr[-1500:])
    assert 55.0 <= silent_s <= 75.0, silent_s  # the BYE came when the session expired
    updates = [r for r in proxy.requests() if r[0] == "UPDATE" and r[2] == f"{LOOPBACK}:{port}"]
    assert len(updates) == 1, proxy.requests()  # the bridge's refresh crossed the proxy
    assert bridge.control.participants("timers") == []
