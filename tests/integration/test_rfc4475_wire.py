"""Issue 15, item 7: the RFC 4475 torture messages sent on the wire (UDP) to a running bridge,
each answered as ../shared/rfc4475/README.md says (the table is tests/unit/test_rfc4475.py's).
The test owns the Via address: each message's first Via names the test's own socket, so every
answer comes back to it. Afterwards a normal call still works."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest

from bridge.server import BridgeServer
from bridge.tools.phone import Phone
from tests.integration.harness import loopback_config
from tests.unit.test_rfc4475 import DISCARD, EXPECTED, OK, TORTURE_DIR

pytestmark = pytest.mark.integration

LWS = rb"(?:[ \t]|\r\n[ \t])*"  # whitespace, folded lines included (wsinv.dat)
FIRST_VIA = re.compile(
    rb"^((?:Via|v)" + LWS + rb":" + LWS + rb"SIP" + LWS + rb"/" + LWS + rb"2\.0" + LWS + rb"/"
    + LWS + rb")[A-Za-z]+((?:[ \t]|\r\n[ \t])+)[^;, \t\r\n]+",
    re.IGNORECASE | re.MULTILINE,
)


class Collector(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []

    def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[override]
        self.received.append(data)


@pytest.fixture
async def bridge() -> AsyncIterator[BridgeServer]:
    server = await BridgeServer(loopback_config()).start()
    try:
        yield server
    finally:
        await server.stop()


def owned_via(data: bytes, port: int) -> bytes:
    """The message with its first Via's sent-by (and transport) made the test's UDP socket."""
    return FIRST_VIA.sub(lambda m: m.group(1) + b"UDP" + m.group(2) + f"127.0.0.1:{port}".encode(),
                         data, count=1)  # fmt: skip


def is_request(data: bytes) -> bool:
    return not data.startswith(b"SIP/")


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_torture_message_on_the_wire(bridge: BridgeServer, name: str) -> None:
    loop = asyncio.get_running_loop()
    transport, collector = await loop.create_datagram_endpoint(
        Collector, local_addr=("127.0.0.1", 0)
    )
    try:
        port = transport.get_extra_info("sockname")[1]
        data = owned_via((TORTURE_DIR / name).read_bytes(), port)
        transport.sendto(data, ("127.0.0.1", bridge.transports.udp_port))
        await asyncio.sleep(0.5)
        lines = [r.split(b"\r\n", 1)[0].split(b" ", 2) for r in collector.received]
        statuses = [int(line[1]) for line in lines]
        finals = [s for s in statuses if s >= 200]
        reasons = [line[2] for line in lines if int(line[1]) >= 200]
        expected = EXPECTED[name]
        if not is_request(data) or expected == {DISCARD}:  # responses match nothing: dropped
            assert statuses == [], (name, statuses)
        elif OK in expected:  # taken like any request: answered, never as malformed SIP
            numbers = {e for e in expected if isinstance(e, int)}
            assert finals, (name, statuses)
            # longreq's SDP has "a=rtpmap:31 LPC" (no clock rate): the SIP message parsed and
            # the offer was refused as SDP, as the same offer in any INVITE would be
            about_sdp = reasons[0].startswith(b"SDP ")
            assert finals[0] not in (400, 416, 505) or finals[0] in numbers or about_sdp, (
                name, statuses,
            )  # fmt: skip
        else:
            allowed = {e for e in expected if isinstance(e, int)}
            if DISCARD in expected and not finals:
                return
            assert finals and finals[0] in allowed, (name, statuses, allowed)
    finally:
        transport.close()
    # whatever came before, a normal call still works
    phone = Phone("127.0.0.1", bridge.transports.udp_port, "after-torture", user="after")
    try:
        assert await phone.call() == 200
    finally:
        await phone.hangup()
        await phone.close()
