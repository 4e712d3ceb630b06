"""Check 4 of issue 17: calls out through an outbound proxy (Kamailio), to a trunk that wants
REGISTER with digest (SIPp as registrar and callee)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.harness import LOOPBACK, eventually
from tests.integration.kamailio import Kamailio
from tests.integration.test_dialout import Api, callee, http, start

pytestmark = pytest.mark.integration


async def test_call_out_through_the_outbound_proxy_and_its_bye_too(tmp_path: Path) -> None:
    sipp = await callee(tmp_path, "answer_rr")
    proxy = Kamailio(tmp_path, 0)
    running = await start(tmp_path, outbound_proxy=f"{LOOPBACK}:{proxy.port}")
    bridge_port = running.bridge.transports.udp_port
    proxy.bridge_port = bridge_port  # the dispatcher list names the bridge: its calls go out
    await proxy.start()
    try:
        async with http(running) as client:
            api = await Api.open(running, client)
            await api.conference("proxiedout")
            (ref,) = await api.refs("proxiedout", dest=sipp.uri)
            assert await api.wait_status(ref) == "answered"
            await api.eject_all("proxiedout", sipp.uri)
            result = await sipp.result()
            assert result.successful == 1, result.stderr[-800:]
        from_bridge = [r for r in proxy.requests() if r[2] == f"{LOOPBACK}:{bridge_port}"]
        methods = [method for method, _uri, _source in from_bridge]
        assert methods[:1] == ["INVITE"] and "BYE" in methods, proxy.requests()
        assert from_bridge[0][1] == sipp.uri  # the callee stays the Request-URI
        await eventually(lambda: running.bridge.control.participants("proxiedout") == [])
    finally:
        await running.stop()
        await proxy.stop()
