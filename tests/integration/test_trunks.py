"""Check 4 of issue 17: calls out through an outbound proxy (Kamailio), to a trunk that wants
REGISTER with digest (SIPp as registrar and callee), and to a trunk named by NAPTR/SRV records
(a DNS server of the test's own on loopback) whose first target answers 503."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bridge.sip.auth import verify
from bridge.sip.registration import RegistrationState
from tests.integration.dns_server import DnsServer
from tests.integration.harness import LOOPBACK, eventually
from tests.integration.kamailio import Kamailio
from tests.integration.test_dialout import TRUNK_PASSWORD, TRUNK_USER, Api, callee, http, start

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


async def test_registers_with_the_trunk_refreshes_and_calls_through_it(tmp_path: Path) -> None:
    sipp = await callee(tmp_path, "registrar_auth_401", "-m", "2")
    running = await start(
        tmp_path,
        trunk=f"{LOOPBACK}:{sipp.port}",
        trunk_username=TRUNK_USER,
        trunk_password=TRUNK_PASSWORD,
        trunk_register=True,
        trunk_register_expires_s=60,
    )
    try:
        assert running.bridge.ua is not None
        (registration,) = running.bridge.ua.registrations
        # the binding of 4 s was refreshed (CSeq 3) and granted again
        await eventually(
            lambda: registration.cseq == 3 and registration.state is RegistrationState.REGISTERED,
            10,
        )
        async with http(running) as client:
            api = await Api.open(running, client)
            await api.conference("trunked")
            (ref,) = await api.refs("trunked", dest="+15551234567", caller_id="+4930123456")
            assert await api.wait_status(ref) == "answered"
            await api.eject_all("trunked", "+15551234567")
            result = await sipp.result()
            # the registrar's call completes only with the refresh, inside the 4 s granted
            assert (result.successful, result.failed) == (2, 0), result.stderr[-800:]
        logs = "".join(p.read_text() for p in sipp.workdir.glob("*_logs.log"))
        register = re.search(r"^Register-Authorization:\s*(Digest .+)$", logs, re.MULTILINE)
        assert register, logs
        assert verify(register.group(1).strip(), "REGISTER", TRUNK_PASSWORD)
    finally:
        await running.stop()


async def test_srv_located_trunk_fails_over_from_503_to_the_next_target(tmp_path: Path) -> None:
    busy = await callee(tmp_path, "reject_503")
    good = await callee(tmp_path, "answer")
    dns_server = await DnsServer(
        [
            ("trunk.test", "NAPTR", '10 50 "s" "SIP+D2U" "" _sip._udp.trunk.test.'),
            ("_sip._udp.trunk.test", "SRV", f"10 0 {busy.port} a.trunk.test."),
            ("_sip._udp.trunk.test", "SRV", f"20 0 {good.port} b.trunk.test."),
            ("a.trunk.test", "A", LOOPBACK),
            ("b.trunk.test", "A", LOOPBACK),
        ]
    ).start()
    running = await start(tmp_path, trunk="trunk.test", dns_server=dns_server.address)
    try:
        async with http(running) as client:
            api = await Api.open(running, client)
            await api.conference("srvtrunk")
            (ref,) = await api.refs("srvtrunk", dest="+15551234567")
            assert await api.wait_status(ref) == "answered"
            await api.eject_all("srvtrunk", "+15551234567")
            for sipp in (busy, good):  # the first got the INVITE and said 503
                result = await sipp.result()
                assert result.successful == 1, result.stderr[-800:]
        assert ("trunk.test", "NAPTR") in dns_server.queries
        assert ("_sip._udp.trunk.test", "SRV") in dns_server.queries
    finally:
        await running.stop()
        dns_server.close()
