"""Teaming's call forward (seed 002) through the dialect's own routes with a real HTTP client,
and its effect on real calls: the document's example replayed, forwarding always to a SIPp
callee reached by following the bridge's redirect (check 3), busy, not reachable and do not
disturb (voice mail), the settings kept across a restart, and every bad input in Teaming's
error shape."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge.tools.phone import Phone
from control.runtime import Runtime
from tests.integration.harness import (
    ADMIN_TOKEN,
    LOOPBACK,
    free_port,
    loopback_config,
    sipp_callee,
    with_control,
)

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}  # what `curl -d` sends
CONTACT = re.compile(r"<sip:([^@>]+)@([0-9.]+):([0-9]+)>")
DOCUMENT_EXAMPLE = {"active": True, "forwardToPhoneNumber": "0123456789", "ringSplash": False}


async def start(tmp_path: Path, trunk_port: int) -> Runtime:
    config = with_control(loopback_config(), tmp_path / "data")
    dialout = dataclasses.replace(config.dialout, trunk=f"{LOOPBACK}:{trunk_port}")
    return await Runtime(dataclasses.replace(config, dialout=dialout)).start()


def http(runtime: Runtime) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=runtime.base_url, timeout=15.0, trust_env=False)


@dataclasses.dataclass
class User:
    client: httpx.AsyncClient
    id: str
    headers: dict[str, str]

    @classmethod
    async def open(cls, client: httpx.AsyncClient, name: str) -> User:
        reply = await client.post(f"/v1/admin/applications/{name}/tokens", headers=ADMIN)
        assert reply.status_code == 201, reply.text
        body = reply.json()
        return cls(client, body["application_id"], {"Authorization": f"Bearer {body['token']}"})

    def url(self, service: str) -> str:
        return f"/teaming/users/{self.id}/services/{service}"

    async def put(self, service: str, body: Any, **headers: str) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return await self.client.put(
            self.url(service), content=content, headers={**self.headers, **FORM, **headers}
        )

    async def get(self, service: str) -> dict[str, Any]:
        reply = await self.client.get(self.url(service), headers=self.headers)
        assert reply.status_code == 200, reply.text
        return dict(reply.json())

    async def conference(self, name: str, **fields: Any) -> None:
        body = {"name": name, **fields}
        reply = await self.client.post("/v1/conferences", json=body, headers=self.headers)
        assert reply.status_code == 201, reply.text


def dial(runtime: Runtime, room: str, user: str = "+4930555") -> Phone:
    return Phone(LOOPBACK, runtime.bridge.transports.udp_port, room, tone_hz=440.0, user=user)


def contact_of(phone: Phone) -> tuple[str, str, int]:
    assert phone.last_final is not None and phone.last_final.code == 302
    found = CONTACT.search(phone.last_final.headers.get("Contact") or "")
    assert found, phone.last_final
    return found.group(1), found.group(2), int(found.group(3))


async def test_document_example_and_defaults(tmp_path: Path) -> None:
    runtime = await start(tmp_path, free_port())
    try:
        async with http(runtime) as client:
            user = await User.open(client, "acme")
            for service in ("callForwardingAlways", "callForwardingBusy"):
                assert await user.get(service) == {
                    "active": False,
                    "forwardToPhoneNumber": None,
                    "ringSplash": False,
                }
            assert await user.get("doNotDisturb") == {"active": False, "ringSplash": False}
            reply = await user.put("callForwardingAlways", DOCUMENT_EXAMPLE)
            assert reply.status_code == 204 and reply.content == b""
            assert await user.get("callForwardingAlways") == DOCUMENT_EXAMPLE
            v1 = await client.get(
                f"/teaming/v1/users/{user.id}/services/callForwardingAlways", headers=user.headers
            )
            assert v1.json() == DOCUMENT_EXAMPLE
    finally:
        await runtime.stop()


async def test_forwarding_always_reaches_a_sipp_callee(tmp_path: Path) -> None:
    """Check 3: the caller follows the bridge's 302 and reaches the SIPp UAS."""
    trunk_port = free_port()
    callee = await sipp_callee(tmp_path, trunk_port, 2)
    runtime = await start(tmp_path, trunk_port)
    phones: list[Phone] = []
    try:
        async with http(runtime) as client:
            user = await User.open(client, "acme")
            await user.conference("desk")
            for target, expected_user in (
                ("+33123456789", "+33123456789"),  # a number: through the trunk
                (f"sip:office@{LOOPBACK}:{trunk_port}", "office"),  # a SIP URI as it is
            ):
                body = {"active": True, "forwardToPhoneNumber": target, "ringSplash": True}
                assert (await user.put("callForwardingAlways", body)).status_code == 204
                caller = dial(runtime, "desk")
                phones.append(caller)
                assert await caller.call() == 302
                name, host, port = contact_of(caller)
                assert (name, host, port) == (expected_user, LOOPBACK, trunk_port)
                follower = Phone(host, port, name, tone_hz=440.0, user="+4930555")
                phones.append(follower)
                assert await follower.call() == 200  # reached the SIPp callee
                await follower.hangup()
            assert runtime.bridge.control.participants("desk") == []  # nobody got in
            result = await asyncio.wait_for(callee, 30)
            assert result.successful == 2, result.stderr[-800:]

            off = {"active": False, "forwardToPhoneNumber": target}
            assert (await user.put("callForwardingAlways", off)).status_code == 204
            back = dial(runtime, "desk")
            phones.append(back)
            assert await back.call() == 200  # no forwarding: the conference answers
    finally:
        for phone in phones:
            await phone.close()
        if not callee.done():
            callee.cancel()
        await runtime.stop()


async def test_busy_not_reachable_and_do_not_disturb(tmp_path: Path) -> None:
    trunk_port = free_port()
    runtime = await start(tmp_path, trunk_port)
    phones: list[Phone] = []

    async def call(room: str, user: str = "+4930555") -> Phone:
        phone = dial(runtime, room, user)
        phones.append(phone)
        await phone.call()
        return phone

    try:
        async with http(runtime) as client:
            user = await User.open(client, "acme")
            await user.conference("small", max_participants=2)
            await user.conference("closed", locked=True)
            busy = {"active": True, "forwardToPhoneNumber": "+491111"}
            unreachable = {"active": True, "forwardToPhoneNumber": "+492222"}
            assert (await user.put("callForwardingBusy", busy)).status_code == 204
            assert (await user.put("callForwardingNotReachable", unreachable)).status_code == 204

            assert (await call("small", "a")).final_status == 200  # room for two: no forward
            assert (await call("small", "b")).final_status == 200
            third = await call("small", "c")
            assert third.final_status == 302 and contact_of(third)[0] == "+491111"
            locked = await call("closed")
            assert locked.final_status == 302 and contact_of(locked)[0] == "+492222"

            assert (await user.put("doNotDisturb", {"active": True})).status_code == 204
            to_voicemail = await call("closed")  # DND comes before anything: voice mail
            assert to_voicemail.final_status == 200
            assert runtime.bridge.control.participants("closed") == []
            await to_voicemail.hangup()
            assert (await user.put("doNotDisturb", {"active": False})).status_code == 204
    finally:
        for phone in phones:
            await phone.close()
        await runtime.stop()

    runtime = await start(tmp_path, trunk_port)  # the same database: settings survive
    try:
        async with http(runtime) as client:
            user = await User.open(client, "acme")
            assert (await user.get("callForwardingBusy"))["forwardToPhoneNumber"] == "+491111"
            again = await call("closed")
            assert again.final_status == 302 and contact_of(again)[0] == "+492222"
    finally:
        for phone in phones:
            await phone.close()
        await runtime.stop()


@pytest.mark.parametrize(
    ("service", "body", "status", "code", "starts"),
    [
        ("callForwardingAlways", {"active": True}, 400, 22, "forwardToPhoneNumber:"),
        ("callForwardingAlways", {"forwardToPhoneNumber": "call me"}, 400, 22, "forwardTo"),
        ("callForwardingAlways", {"forwardToPhoneNumber": "sip:no-host"}, 400, 22, "forwardTo"),
        ("callForwardingAlways", {"forwardToPhoneNumber": ""}, 400, 22, "forwardToPhoneNumber"),
        ("callForwardingBusy", {"active": "yes"}, 400, 22, "active:"),
        ("callForwardingBusy", {"ringSplash": 1}, 400, 22, "ringSplash:"),
        ("callForwardingBusy", {"colour": "blue"}, 400, 22, "colour: unknown field"),
        ("doNotDisturb", {"active": True, "forwardToPhoneNumber": "+4930"}, 400, 22, "forward"),
        ("voiceMessaging", {"forwardToPhoneNumber": "+4930"}, 400, 22, "forwardToPhoneNumber:"),
        ("voiceMessaging", {"active": 1}, 400, 22, "active:"),
        ("callForwardingSometimes", {"active": False}, 404, 60, "service "),
        ("callForwardingAlways", b"{not json", 400, 22, "body:"),
        ("callForwardingAlways", b"[1]", 400, 22, "body:"),
    ],
)
async def test_bad_settings(
    tmp_path: Path, service: str, body: Any, status: int, code: int, starts: str
) -> None:
    runtime = await start(tmp_path, free_port())
    try:
        async with http(runtime) as client:
            user = await User.open(client, "acme")
            reply = await user.put(service, body)
            assert reply.status_code == status, reply.text
            error = reply.json()
            assert set(error) == {"code", "message", "description"} and error["code"] == code
            assert error["message"].startswith(starts), error
            if status == 400:
                assert (await user.get(service))["active"] is False  # nothing was changed
    finally:
        await runtime.stop()


async def test_credentials_and_other_users(tmp_path: Path) -> None:
    runtime = await start(tmp_path, free_port())
    try:
        async with http(runtime) as client:
            user = await User.open(client, "acme")
            other = await User.open(client, "globex")
            stranger = await client.get(user.url("doNotDisturb"), headers=other.headers)
            assert stranger.status_code == 404 and stranger.json()["code"] == 60
            bare = await client.get(user.url("doNotDisturb"))
            assert bare.status_code == 400 and bare.json()["code"] == 25
            # a token without the configuration scope
            reply = await client.post(
                "/v1/admin/applications/acme/clients", json={"scopes": []}, headers=ADMIN
            )
            assert reply.status_code == 400  # at least one scope
            reply = await client.post(
                "/v1/admin/applications/acme/clients",
                json={"scopes": ["b2b:teaming:user:callManagement"]},
                headers=ADMIN,
            )
            registered = reply.json()
            token = await client.post(
                "/openidconnect/b2b/v1/token",
                data={"grant_type": "client_credentials"},
                auth=(registered["client_id"], registered["client_secret"]),
            )
            narrow = {"Authorization": f"Bearer {token.json()['access_token']}"}
            denied = await client.put(
                user.url("doNotDisturb"), json={"active": True}, headers=narrow
            )
            assert denied.status_code == 403 and denied.json()["code"] == 50
            assert (await user.get("doNotDisturb"))["active"] is False
    finally:
        await runtime.stop()


async def test_no_answer_forwards_a_call_left_ringing(tmp_path: Path) -> None:
    runtime = await start(tmp_path, free_port())
    loop = asyncio.get_running_loop()
    caller = dial(runtime, "desk")
    try:
        async with http(runtime) as client:
            user = await User.open(client, "acme")
            assert (await user.get("callForwardingNoAnswer"))["numberOfRings"] == 3  # default
            await user.conference("desk", manual_answer=True)
            body = {"active": True, "forwardToPhoneNumber": "+49333", "numberOfRings": 1}
            assert (await user.put("callForwardingNoAnswer", body)).status_code == 204
            assert await user.get("callForwardingNoAnswer") == {**body, "ringSplash": False}
            began = loop.time()
            assert await caller.call(timeout=15) == 302  # nobody answered within one ring
            assert loop.time() - began >= 5.5  # a ring is 6 s
            assert contact_of(caller)[0] == "+49333"
            calls = await client.get(f"/teaming/users/{user.id}/calls", headers=user.headers)
            assert calls.json() == []  # no longer ringing
    finally:
        await caller.close()
        await runtime.stop()


@pytest.mark.parametrize(
    ("service", "rings"),
    [
        ("callForwardingNoAnswer", 0),
        ("callForwardingNoAnswer", 21),
        ("callForwardingNoAnswer", "3"),
        ("callForwardingBusy", 3),
        ("voiceMessaging", 3),
    ],
)
async def test_bad_number_of_rings(tmp_path: Path, service: str, rings: Any) -> None:
    runtime = await start(tmp_path, free_port())
    try:
        async with http(runtime) as client:
            user = await User.open(client, "acme")
            reply = await user.put(service, {"numberOfRings": rings})
            assert reply.status_code == 400 and reply.json()["code"] == 22, reply.text
            assert reply.json()["message"].startswith("numberOfRings"), reply.text
    finally:
        await runtime.stop()
