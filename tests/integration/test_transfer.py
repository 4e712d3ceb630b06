"""Check 3 and the REFER part of check 5 of issue 17: blind transfer by REFER (RFC 3515).

The API transfers a baresip participant into another room (baresip calls it on the bridge's
REFER; what it hears there is measured by FFT) and, again, to a SIPp callee; a phone's own
REFER to a room that does not exist gets 404 while the witness call keeps its audio. The other
bad inputs of check 5 (a malformed Record-Route, a Route loop, an UPDATE outside a dialog) are
sent as raw datagrams next to the same witness.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bridge.media.tones import tone_levels
from bridge.tools.phone import Phone
from control.runtime import Runtime
from tests.integration.baresip import Baresip, free_sip_port
from tests.integration.harness import (
    ADMIN_TOKEN,
    LOOPBACK,
    SCENARIOS,
    eventually,
    loopback_config,
    run_sipp,
    sipp_listening,
    with_control,
)
from tests.integration.test_bad_input import assert_still_serving, open_witness, udp_exchange

pytestmark = pytest.mark.integration

RATE = 8000
ROOM_TONE = 440.0  # what the phone waiting in the target room sends
BARESIP_HZ = 1700


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    config = with_control(loopback_config(rooms={"auto_create": False}), tmp_path / "data")
    running = await Runtime(config).start()
    try:
        yield running
    finally:
        await running.stop()


async def api(runtime: Runtime, *rooms: str) -> tuple[httpx.AsyncClient, dict[str, str]]:
    client = httpx.AsyncClient(base_url=runtime.base_url, timeout=10.0, trust_env=False)
    reply = await client.post(
        "/v1/admin/applications/pbx/tokens", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert reply.status_code == 201, reply.text
    headers = {"Authorization": f"Bearer {reply.json()['token']}"}
    for room in rooms:
        created = await client.post("/v1/conferences", json={"name": room}, headers=headers)
        assert created.status_code == 201, created.text
    return client, headers


def members(runtime: Runtime, room: str) -> set[str]:
    return {p.caller for p in runtime.bridge.control.participants(room)}


async def transfer(
    client: httpx.AsyncClient, headers: dict[str, str], room: str, target: str
) -> httpx.Response:
    people = (await client.get(f"/v1/conferences/{room}/participants", headers=headers)).json()
    person = people[0]
    return await client.post(
        f"/v1/conferences/{room}/participants/{person['id']}/transfer",
        json={"target": target},
        headers=headers,
    )


async def test_api_transfers_baresip_into_another_room_and_it_hears_that_room(
    runtime: Runtime, tmp_path: Path
) -> None:
    port = runtime.bridge.transports.udp_port
    client, headers = await api(runtime, "lobbyroom", "mainroom")
    waiting = Phone(LOOPBACK, port, "mainroom", tone_hz=ROOM_TONE, user="waiting")
    softphone = Baresip(tmp_path, tone_hz=BARESIP_HZ)
    try:
        assert await waiting.call() == 200
        await softphone.start()
        await softphone.dial(f"sip:lobbyroom@{LOOPBACK}:{port}")
        await eventually(lambda: members(runtime, "lobbyroom") == {"softphone"})
        moved = await transfer(client, headers, "lobbyroom", "mainroom")
        assert moved.status_code == 202, moved.text
        await eventually(lambda: members(runtime, "mainroom") == {"waiting", "softphone"}, 15)
        await eventually(lambda: members(runtime, "lobbyroom") == set(), 10)
        await asyncio.sleep(2.5)
        await softphone.hangup()
        await softphone.stop()
        heard = softphone.heard(last_call=True)[-int(2.0 * RATE) : -int(0.3 * RATE)]
        level = tone_levels(heard, [ROOM_TONE], RATE)[ROOM_TONE]
        assert level > -35.0, (level, softphone.output[-2000:])
        loop = asyncio.get_running_loop()
        now = loop.time()
        assert (
            tone_levels(waiting.audio(now - 3.5, now - 1.0), [float(BARESIP_HZ)])[float(BARESIP_HZ)]
            > -35.0
        )  # and the room hears the transferred caller
    finally:
        await client.aclose()
        await softphone.stop()
        await waiting.hangup()


async def test_api_transfers_a_participant_to_a_sipp_callee(
    runtime: Runtime, tmp_path: Path
) -> None:
    port = runtime.bridge.transports.udp_port
    client, headers = await api(runtime, "handoff")
    callee_port = free_sip_port()
    sipp = asyncio.create_task(
        run_sipp(
            None,
            ["-sf", str(SCENARIOS / "uas_answer.xml"), "-m", "1"],
            tmp_path,
            timeout=40,
            port=callee_port,
        )
    )
    softphone = Baresip(tmp_path, tone_hz=BARESIP_HZ)
    try:
        await sipp_listening(callee_port)
        await softphone.start()
        await softphone.dial(f"sip:handoff@{LOOPBACK}:{port}")
        await eventually(lambda: members(runtime, "handoff") == {"softphone"})
        mark = len(softphone.output)
        moved = await transfer(client, headers, "handoff", f"sip:callee@{LOOPBACK}:{callee_port}")
        assert moved.status_code == 202, moved.text
        await eventually(lambda: members(runtime, "handoff") == set(), 15)
        await softphone.wait_for("Call established", 10, mark)  # baresip is with SIPp now
        await softphone.hangup()
        result = await sipp
        assert (result.successful, result.failed) == (1, 0), result.stderr[-1500:]
    finally:
        await client.aclose()
        await softphone.stop()
        if not sipp.done():
            sipp.cancel()
            with contextlib.suppress(BaseException):
                await sipp


async def test_bad_transfer_requests_get_clear_errors(runtime: Runtime, tmp_path: Path) -> None:
    port = runtime.bridge.transports.udp_port
    client, headers = await api(runtime, "witness", "refroom")
    witness = await open_witness(runtime.bridge)
    softphone = Baresip(tmp_path, tone_hz=BARESIP_HZ)
    try:
        bad_target = await transfer(client, headers, "witness", "not a uri")
        assert bad_target.status_code == 400 and "target" in bad_target.text
        await softphone.start()
        await softphone.dial(f"sip:refroom@{LOOPBACK}:{port}")
        await eventually(lambda: members(runtime, "refroom") == {"softphone"})
        mark = len(softphone.output)
        await softphone.command(f"/transfer sip:nosuchroom@{LOOPBACK}:{port}")
        # baresip prints the REFER's failure (it hangs up its call itself right after the REFER)
        await softphone.wait_for("transfer failed: 404 No such room", 10, mark)
        await assert_still_serving(witness)
    finally:
        await client.aclose()
        await softphone.stop()
        for phone in witness:
            await phone.hangup()


def raw_request(port: int, method: str, extra: str, to_tag: str, n: int) -> bytes:
    to = f"<sip:witness@{LOOPBACK}>" + (f";tag={to_tag}" if to_tag else "")
    body = (
        b""
        if method != "INVITE"
        else (
            b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            b"m=audio 40000 RTP/AVP 0\r\n"
        )
    )
    content = "Content-Type: application/sdp\r\n" if body else ""
    return (
        f"{method} sip:witness@{LOOPBACK}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {LOOPBACK}:5999;branch=z9hG4bK{method}{n};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:bad@{LOOPBACK}>;tag=b1\r\nTo: {to}\r\n"
        f"Call-ID: {method}-{n}@bad\r\nCSeq: 1 {method}\r\n"
        f"Contact: <sip:bad@{LOOPBACK}:5999>\r\n{extra}{content}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def test_bad_routes_and_update_outside_a_dialog(runtime: Runtime) -> None:
    port = runtime.bridge.transports.udp_port
    await api(runtime, "witness")
    witness = await open_witness(runtime.bridge)
    us = f"<sip:{LOOPBACK}:{port};lr>"
    cases = [
        ("INVITE", "Record-Route: <sip:@@proxy;lr>\r\n", "", b"400 Malformed Record-Route URI"),
        ("INVITE", f"Route: {us}, <sip:127.0.0.7;lr>, {us}\r\n", "", b"482 Loop Detected"),
        ("UPDATE", "", "", b"481 "),
        ("UPDATE", "", "nosuchdialog", b"481 "),
        ("REFER", "Refer-To: <sip:witness@127.0.0.1>\r\n", "", b"481 "),
    ]
    try:
        for n, (method, extra, to_tag, expected) in enumerate(cases):
            answers = await udp_exchange(port, raw_request(port, method, extra, to_tag, n))
            finals = [a for a in answers if not a.startswith(b"SIP/2.0 100")]
            assert finals and finals[0].split(b"\r\n")[0].startswith(b"SIP/2.0 " + expected), (
                method,
                finals,
            )
        await assert_still_serving(witness)
    finally:
        for phone in witness:
            await phone.hangup()
