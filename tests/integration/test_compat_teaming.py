"""The Orange Teaming dialect (seed 002) with a real HTTP client against the running bridge:
the document's example requests replayed field by field, call control end to end (scripted
phones and a SIPp caller ringing in a manual-answer conference, answered, held (checked by FFT),
released, with the callbacks), and every error of the document that applies."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge.media.g711 import ulaw_encode
from bridge.media.tones import sine, tone_levels
from bridge.tools.phone import Phone
from control.runtime import Runtime
from tests.integration.harness import (
    ADMIN_TOKEN,
    LOOPBACK,
    SCENARIOS,
    FakeClock,
    eventually,
    loopback_config,
    run_sipp,
    with_control,
)
from tests.receiver import Receiver

pytestmark = pytest.mark.integration

HEARD_DB = -30.0
ABSENT_DB = -50.0
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}  # what `curl -d` sends
PROFILE_FIELDS = {
    "userId",
    "impId",
    "countryCode",
    "didNumber",
    "shortNumber",
    "firstName",
    "lastName",
}
SUBSCRIPTION_FIELDS = {"subscriptionId", "expires", "applicationId", "eventType", "callBackUrl"}
CALL_FIELDS = {"callId", "externalTrackingId", "state", "caller", "conference", "startTime"}
EXPIRED = {
    "code": 42,
    "message": "Expired credentials",
    "description": "The requested service needs credentials, and the ones provided were "
    "out-of-date.",
}



async def start(tmp_path: Path, clock: FakeClock | None = None) -> Runtime:
    return await Runtime(with_control(loopback_config(), tmp_path / "data"), clock).start()


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    running = await start(tmp_path)
    try:
        yield running
    finally:
        await running.stop()


def http(runtime: Runtime) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=runtime.base_url, timeout=15.0, trust_env=False)


class User:
    """One application seen as a Teaming user: its id, its bearer header, its URLs."""

    def __init__(self, client: httpx.AsyncClient, reply: dict[str, Any]) -> None:
        self.client = client
        self.id: str = reply["application_id"]
        self.headers = {"Authorization": f"Bearer {reply['token']}"}

    @classmethod
    async def open(cls, client: httpx.AsyncClient, name: str, **token: Any) -> User:
        reply = await client.post(
            f"/v1/admin/applications/{name}/tokens", json=token or None, headers=ADMIN
        )
        assert reply.status_code == 201, reply.text
        return cls(client, reply.json())

    @property
    def calls_url(self) -> str:
        return f"/teaming/users/{self.id}/calls"

    async def conference(self, name: str, manual_answer: bool = True) -> None:
        body = {"name": name, "manual_answer": manual_answer}
        reply = await self.client.post("/v1/conferences", json=body, headers=self.headers)
        assert reply.status_code == 201, reply.text

    async def subscribe(self, url: str, **fields: Any) -> httpx.Response:
        body = {
            "applicationId": "your_application_name",
            "callBackUrl": url,
            "eventType": "Basic Call",
            "expires": 3600,
            "targetId": self.id,
            "targetType": "User",
            **fields,
        }
        return await self.client.post(
            self.calls_url, content=json.dumps(body), headers={**self.headers, **FORM}
        )

    async def calls(self, query: str = "") -> httpx.Response:
        reply = await self.client.get(f"{self.calls_url}{query}", headers=self.headers)
        assert reply.status_code == 200, reply.text
        return reply

    async def act(self, call_id: str, action: str) -> httpx.Response:
        url = f"{self.calls_url}/{call_id}?action={action}"
        return await self.client.put(url, headers=self.headers)

    async def release(self, call_id: str, prefix: str = "/teaming/v1") -> httpx.Response:
        url = f"{prefix}/users/{self.id}/calls/{call_id}"
        return await self.client.delete(url, headers=self.headers)

    async def ringing(self, caller: str, timeout: float = 10.0) -> str:
        """The callId of `caller`'s call once it rings."""
        for _ in range(int(timeout / 0.05)):
            for call in (await self.calls()).json():
                if call["caller"] == caller and call["state"] == "ALERTING":
                    return str(call["callId"])
            await asyncio.sleep(0.05)
        raise AssertionError(f"{caller} never rang")




def phone(runtime: Runtime, room: str, user: str, tone: float | None = None) -> Phone:
    return Phone(LOOPBACK, runtime.bridge.transports.udp_port, room, tone_hz=tone, user=user)


def dial(caller: Phone) -> asyncio.Task[int]:
    """Dial in the background: a manual-answer room leaves the call ringing."""
    return asyncio.create_task(caller.call(timeout=30.0))


def assert_error(reply: httpx.Response, status: int, starts: str = "") -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    error: dict[str, Any] = reply.json()
    assert set(error) == {"code", "message", "description"}, error
    assert error["message"].startswith(starts), error
    return error


def levels(listener: Phone, tones: list[float], seconds: float = 0.8) -> dict[float, float]:
    now = asyncio.get_running_loop().time()
    return tone_levels(listener.audio(now - seconds, now), tones)


# --- 1. the document's example requests -------------------------------------------------------


async def test_profile_as_documented(tmp_path: Path) -> None:
    running = await start(tmp_path)
    try:
        async with http(running) as client:
            user = await User.open(client, "acme-sales")
            other = await User.open(client, "globex")
            port = running.bridge.transports.udp_port
            reply = await client.get("/teaming/users/myTelephonyProfile", headers=user.headers)
            assert reply.status_code == 200, reply.text
            assert reply.json() == {
                "userId": user.id,
                "impId": f"acme-sales@{LOOPBACK}",
                "countryCode": "",
                "didNumber": f"sip:conference@{LOOPBACK}:{port}",
                "shortNumber": "conference",
                "firstName": "acme",
                "lastName": "sales",
            }
            await user.conference("desk")
            await user.conference("later")
            profile = (
                await client.get("/teaming/v1/users/myTelephonyProfile", headers=user.headers)
            ).json()
            assert set(profile) == PROFILE_FIELDS
            assert profile["didNumber"] == f"sip:desk@{LOOPBACK}:{port}"
            assert profile["shortNumber"] == "desk"
            url = f"/teaming/users/{user.id}/telephonyProfile"
            assert (await client.get(url, headers=user.headers)).json() == profile
            assert (await client.get(url, headers=ADMIN)).json() == profile  # the administrator
            by_name = "/teaming/users/acme-sales/telephonyProfile"
            assert (await client.get(by_name, headers=user.headers)).json() == profile
            assert_error(await client.get(url, headers=other.headers), 404, "user ")
            missing = "/teaming/users/nobody/telephonyProfile"
            assert_error(await client.get(missing, headers=ADMIN), 404, "user ")
            schema = (await client.get("/openapi.json")).json()["paths"]
            assert "/teaming/users/{userId}/calls/{callId}" in schema
            assert not [path for path in schema if path.startswith("/teaming/v1/")]
    finally:
        await running.stop()


async def test_subscriptions_as_documented_with_pagination(tmp_path: Path) -> None:
    clock = FakeClock()
    running = await start(tmp_path, clock)
    try:
        async with http(running) as client:
            user = await User.open(client, "acme")
            reply = await user.subscribe("https://your_call_back_url")
            assert reply.status_code == 201, reply.text
            created = reply.json()
            assert set(created) == {"subscriptionId", "expires"} and created["expires"] == 3600
            sid = created["subscriptionId"]

            clock.advance(seconds=39)
            for path in ("/teaming/susbcriptions", "/teaming/subscriptions"):  # document's typo
                listing = await client.get(path, headers=user.headers)
                assert listing.status_code == 200, listing.text
                assert listing.json() == [
                    {
                        "subscriptionId": sid,
                        "expires": 3561,
                        "applicationId": "your_application_name",
                        "eventType": "Basic Call",
                        "callBackUrl": "https://your_call_back_url/",
                    }
                ]
                assert listing.headers["X-Result-Count"] == "1"
                assert listing.headers["X-Total-Count"] == "1"

            renewed = await client.put(
                user.calls_url, content=b'{"expires": 3600}', headers={**user.headers, **FORM}
            )
            assert renewed.status_code == 204 and renewed.content == b""
            one = await client.get(f"/teaming/subscriptions/{sid}", headers=user.headers)
            assert one.json()["expires"] == 3600 and set(one.json()) == SUBSCRIPTION_FIELDS
            renewed = await client.put(
                f"/teaming/subscriptions/{sid}", json={"expires": 7200}, headers=user.headers
            )
            assert renewed.status_code == 204
            one = await client.get(f"/teaming/v1/subscriptions/{sid}", headers=user.headers)
            assert one.json()["expires"] == 7200

            native = (await client.get(f"/v1/subscriptions/{sid}", headers=user.headers)).json()
            assert sorted(native["events"]) == [
                "call.alerting",
                "call.ended",
                "participant.joined",
            ]
            other_kind = await client.post(
                "/v1/subscriptions",
                json={"callback_url": "http://127.0.0.1:9/x", "events": ["dtmf"]},
                headers=user.headers,
            )
            assert other_kind.status_code == 201  # not a Teaming subscription: not listed

            for i in range(3):
                extra = await user.subscribe(f"http://127.0.0.1:9/hook{i}", applicationId=None)
                assert extra.status_code == 201, extra.text
            await check_subscription_pages(client, user)

            deleted = await client.delete(f"/teaming/v1/subscriptions/{sid}", headers=user.headers)
            assert deleted.status_code == 204
            gone = await client.get(f"/teaming/subscriptions/{sid}", headers=user.headers)
            assert_error(gone, 404, "subscription ")
            listing = await client.get("/teaming/subscriptions", headers=user.headers)
            assert listing.headers["X-Total-Count"] == "3"
            assert {s["applicationId"] for s in listing.json()} == {"acme"}  # the default
    finally:
        await running.stop()


async def check_subscription_pages(client: httpx.AsyncClient, user: User) -> None:
    """Four subscriptions: the first page, the last item, past the end, and the document's
    walk (increment the offset by X-Result-Count until X-Total-Count items are read)."""

    async def page(query: str) -> httpx.Response:
        reply = await client.get(f"/teaming/subscriptions{query}", headers=user.headers)
        assert reply.status_code == 200, reply.text
        assert reply.headers["X-Total-Count"] == "4"
        assert reply.headers["X-Result-Count"] == str(len(reply.json()))
        return reply

    everything = (await page("")).json()
    assert len(everything) == 4
    assert (await page("?offset=0&limit=2")).json() == everything[:2]
    assert (await page("?offset=3")).json() == everything[3:]
    assert (await page("?offset=4")).json() == []
    seen: list[dict[str, Any]] = []
    offset = 0
    while True:
        reply = await page(f"?offset={offset}&limit=3")
        seen += reply.json()
        offset += int(reply.headers["X-Result-Count"])
        if offset >= int(reply.headers["X-Total-Count"]):
            break
    assert seen == everything


# --- 2. call control end to end ---------------------------------------------------------------


async def test_teaming_call_control_end_to_end(runtime: Runtime, tmp_path: Path) -> None:
    receiver = Receiver()
    await receiver.start()
    alice = phone(runtime, "desk", "alice", 440.0)
    bob = phone(runtime, "desk", "bob", 1000.0)
    carol = phone(runtime, "desk", "carol")
    phones = [alice, bob, carol]
    try:
        async with http(runtime) as client:
            user = await User.open(client, "acme")
            await user.conference("desk")
            assert (await user.subscribe(receiver.url())).status_code == 201
            listing = await user.calls()
            assert listing.json() == [] and listing.headers["X-Total-Count"] == "0"

            alice_id = await answer_rings(user, alice)
            bob_id = await answer_rings(user, bob)
            assert runtime.plane is not None
            await eventually(lambda: runtime.plane.conferences["desk"].state == "ACTIVE")
            await hold_and_unhold(user, alice_id, bob)

            carol_call = dial(carol)
            carol_id = await user.ringing("carol")
            await check_call_pages(user, [alice_id, bob_id, carol_id])
            released = await user.release(carol_id, prefix="/teaming")
            assert released.status_code == 204 and released.content == b""
            assert await asyncio.wait_for(carol_call, 10) == 603

            await sipp_answered_then_released(runtime, user, tmp_path)

            assert (await user.release(bob_id)).status_code == 204  # the document's /v1 path
            await eventually(lambda: bob.ended_by_bridge)
            await alice.hangup()
            listing = await user.calls()
            assert listing.json() == [] and listing.headers["X-Total-Count"] == "0"

        await eventually(lambda: len(left_events(receiver)) == 4)  # 3 answered, 1 declined
        check_callbacks(receiver, {alice_id: alice, bob_id: bob}, carol_id, carol)
    finally:
        for caller in phones:
            await caller.hangup()
        await receiver.close()


async def answer_rings(user: User, caller: Phone) -> str:
    """The caller's phone rings until ANSWER; the call is listed all along with its Call-ID."""
    task = dial(caller)
    call_id = await user.ringing(caller.user)
    (listed,) = [c for c in (await user.calls()).json() if c["callId"] == call_id]
    assert set(listed) == CALL_FIELDS
    assert listed["externalTrackingId"] == caller.call_id
    assert listed["conference"] == "desk" and listed["startTime"].endswith("Z")
    await asyncio.sleep(0.3)
    assert not task.done()  # still ringing: only the API answers
    answered = await user.act(call_id, "ANSWER")
    assert answered.status_code == 204 and answered.content == b""
    assert await asyncio.wait_for(task, 10) == 200
    (listed,) = [c for c in (await user.calls()).json() if c["callId"] == call_id]
    assert listed["state"] == "ACTIVE"  # the same callId from alerting to answer
    return call_id


async def hold_and_unhold(user: User, held_id: str, listener: Phone) -> None:
    """HOLD takes the 440 Hz caller out of the mix the 1000 Hz listener hears; UNHOLD restores."""
    await asyncio.sleep(1.5)
    assert levels(listener, [440.0])[440.0] > HEARD_DB
    assert (await user.act(held_id, "HOLD")).status_code == 204
    assert (await user.act(held_id, "HOLD")).status_code == 204  # holding twice is harmless
    (held,) = [c for c in (await user.calls()).json() if c["callId"] == held_id]
    assert held["state"] == "HELD"
    await asyncio.sleep(1.2)
    assert levels(listener, [440.0])[440.0] < ABSENT_DB
    assert (await user.act(held_id, "unhold")).status_code == 204
    await asyncio.sleep(1.2)
    assert levels(listener, [440.0])[440.0] > HEARD_DB


async def check_call_pages(user: User, ids: list[str]) -> None:
    """Three calls, oldest first: the first page, the last item, past the end."""
    for query, expected in (
        ("?offset=0&limit=2", ids[:2]),
        ("?offset=2", ids[2:]),
        ("?offset=3", []),
        ("", ids),
    ):
        reply = await user.calls(query)
        assert [c["callId"] for c in reply.json()] == expected, query
        assert reply.headers["X-Result-Count"] == str(len(expected))
        assert reply.headers["X-Total-Count"] == "3"
    states = [c["state"] for c in (await user.calls()).json()]
    assert states == ["ACTIVE", "ACTIVE", "ALERTING"]


async def sipp_answered_then_released(runtime: Runtime, user: User, tmp_path: Path) -> None:
    """A SIPp caller rings, is answered through the API and released with BYE: SIPp's
    scenario succeeds only when it sees the bridge's BYE after its 200."""
    workdir = tmp_path / "sipp"
    workdir.mkdir()
    (workdir / "tone.ulaw").write_bytes(ulaw_encode(sine(1700.0, 1.0, amplitude=6000)))
    scenario = ["-sf", str(SCENARIOS / "uac_tone_until_bye.xml"), "-s", "desk", "-m", "1"]
    port = runtime.bridge.transports.udp_port
    sipp = asyncio.create_task(run_sipp(port, scenario, workdir, timeout=40))
    try:
        call_id = await user.ringing("sipp")
        assert (await user.act(call_id, "ANSWER")).status_code == 204
        port = runtime.bridge.control
        await eventually(lambda: port.find_participant("desk", call_id) is not None)
        await asyncio.sleep(0.5)
        assert (await user.release(call_id)).status_code == 204
        result = await asyncio.wait_for(sipp, 30)
        assert result.successful == 1 and result.failed == 0, result.stderr[-500:]
    finally:
        sipp.cancel()


def left_events(receiver: Receiver) -> list[dict[str, Any]]:
    return [b for b in receiver.delivered if b["type"] == "call.ended"]


def check_callbacks(
    receiver: Receiver, answered: dict[str, Phone], declined_id: str, declined: Phone
) -> None:
    """Per call, in order: alerting, answered (joined), released (call.ended); a declined call
    alerted and was released without an answer. Alerting names the SIP Call-ID and the callId
    the call keeps."""
    events = receiver.delivered
    assert {b["type"] for b in events} <= {
        "call.alerting",
        "participant.joined",
        "call.ended",
    }
    for call_id, caller in answered.items():
        mine = [b for b in events if b["data"].get("participant_id") == call_id]
        assert [b["type"] for b in mine] == [
            "call.alerting",
            "participant.joined",
            "call.ended",
        ]
        alerting = mine[0]["data"]
        assert alerting["call_id"] == caller.call_id and alerting["caller"] == caller.user
        assert alerting["manual_answer"] is True and alerting["conference"] == "desk"
    declined_events = [b for b in events if b["data"].get("participant_id") == declined_id]
    assert [b["type"] for b in declined_events] == ["call.alerting", "call.ended"]
    assert declined_events[1]["data"]["answered_at"] is None
    assert declined_events[0]["data"]["call_id"] == declined.call_id


# --- 3. bad input ---------------------------------------------------------------------------


async def test_credential_errors_use_the_document_codes(tmp_path: Path) -> None:
    clock = FakeClock()
    running = await start(tmp_path, clock)
    try:
        async with http(running) as client:
            user = await User.open(client, "acme", expires_in_s=60)
            profile = "/teaming/users/myTelephonyProfile"
            assert (await client.get(profile, headers=user.headers)).status_code == 200

            missing = await client.get(profile)
            assert_error(missing, 400)
            assert missing.json()["code"] == 25
            assert missing.json()["description"] == "Missing header"
            # credentials come first: a bad request without them is still code 25
            bad_and_bare = await client.put(f"{user.calls_url}/nope?action=DANCE")
            assert bad_and_bare.status_code == 400 and bad_and_bare.json()["code"] == 25

            basic = await client.get(profile, headers={"Authorization": "Basic YWxpY2U6eA=="})
            assert assert_error(basic, 401)["code"] == 40
            unknown = await client.get(profile, headers={"Authorization": "Bearer nope"})
            assert assert_error(unknown, 401)["code"] == 41
            assert unknown.headers["WWW-Authenticate"].startswith("Bearer")

            clock.advance(seconds=61)
            for reply in (
                await client.get(profile, headers=user.headers),
                await client.get(user.calls_url, headers=user.headers),
                await client.delete(f"/teaming/v1/users/{user.id}/calls/x", headers=user.headers),
            ):
                assert reply.status_code == 401 and reply.json() == EXPIRED, reply.text
            fresh = await User.open(client, "acme")
            assert (await client.get(profile, headers=fresh.headers)).status_code == 200
    finally:
        await running.stop()


async def test_call_control_errors(runtime: Runtime) -> None:
    dave = phone(runtime, "desk", "dave")
    erin = phone(runtime, "desk", "erin")
    try:
        async with http(runtime) as client:
            user = await User.open(client, "acme")
            other = await User.open(client, "globex")
            await user.conference("desk")
            dave_call = dial(dave)
            dave_id = await user.ringing("dave")

            assert assert_error(await user.act("nope", "ANSWER"), 404, "call ")["code"] == 60
            assert_error(await user.release("nope"), 404, "call ")
            assert assert_error(await user.act(dave_id, "DANCE"), 400, "action:")["code"] == 28
            no_action = await client.put(f"{user.calls_url}/{dave_id}", headers=user.headers)
            assert_error(no_action, 400, "action:")
            not_answered = assert_error(await user.act(dave_id, "HOLD"), 409, "callId:")
            assert not_answered["code"] == 64
            stranger = f"/teaming/users/{user.id}/calls/{dave_id}?action=ANSWER"
            assert_error(await client.put(stranger, headers=other.headers), 404, "user ")
            assert_error(await other.release(dave_id), 404, "call ")  # not in its rooms

            assert (await user.act(dave_id, "ANSWER")).status_code == 204
            assert await asyncio.wait_for(dave_call, 10) == 200
            again = assert_error(await user.act(dave_id, "ANSWER"), 409, "callId:")
            assert again["code"] == 64  # numeric, as the document's errors

            for query in ("?offset=-1", "?offset=abc", "?limit=0", "?limit=100000"):
                reply = await client.get(f"{user.calls_url}{query}", headers=user.headers)
                assert_error(reply, 400, query[1:].split("=")[0] + ":")

            erin_call = dial(erin)
            erin_id = await user.ringing("erin")
            assert (await user.release(erin_id)).status_code == 204
            assert await asyncio.wait_for(erin_call, 10) == 603
            assert_error(await user.act(erin_id, "ANSWER"), 404, "call ")  # gone
            assert (await user.calls()).headers["X-Total-Count"] == "1"  # dave still talks
    finally:
        await dave.hangup()
        await erin.hangup()


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"callBackUrl": None}, "callBackUrl:"),
        ({"callBackUrl": "ftp://example.org/x"}, "callBackUrl:"),
        ({"callBackUrl": "not a url"}, "callBackUrl:"),
        ({"expires": 10}, "expires:"),
        ({"expires": 31 * 86_400}, "expires:"),
        ({"expires": "soon"}, "expires:"),
        ({"eventType": "Voice Mail"}, "eventType:"),
        ({"eventType": None}, "eventType:"),
        ({"targetType": "Group"}, "targetType:"),
        ({"targetId": "someone-else"}, "targetId:"),
        ({"applicationId": ""}, "applicationId:"),
        ({"colour": "blue"}, "colour: unknown field"),
    ],
)
async def test_bad_subscription_bodies_get_400(
    runtime: Runtime, fields: dict[str, Any], field: str
) -> None:
    async with http(runtime) as client:
        user = await User.open(client, "acme")
        body = {
            "callBackUrl": "http://127.0.0.1:9/hook",
            "eventType": "Basic Call",
            "expires": 3600,
            **fields,
        }
        body = {key: value for key, value in body.items() if value is not None}
        reply = await client.post(user.calls_url, json=body, headers=user.headers)
        assert_error(reply, 400, field)
        assert reply.json()["code"] == 22  # a bad body field
        listing = await client.get("/teaming/subscriptions", headers=user.headers)
        assert listing.json() == []  # nothing was created
        assert (await client.get("/v1/health")).status_code == 200


async def test_bad_renewals_and_bodies(runtime: Runtime) -> None:
    async with http(runtime) as client:
        user = await User.open(client, "acme")
        nothing = await client.put(user.calls_url, json={"expires": 3600}, headers=user.headers)
        assert_error(nothing, 404, "subscription ")
        broken = await client.post(user.calls_url, content=b"{not json", headers=user.headers)
        assert_error(broken, 400, "body:")
        listed = await client.post(user.calls_url, content=b"[1, 2]", headers=user.headers)
        assert_error(listed, 400, "body:")
        created = await user.subscribe("http://127.0.0.1:9/hook")
        sid = created.json()["subscriptionId"]
        short = await client.put(user.calls_url, json={"expires": 5}, headers=user.headers)
        assert_error(short, 400, "expires:")
        unknown = await client.put(
            user.calls_url, json={"subscriptionId": "nope"}, headers=user.headers
        )
        assert_error(unknown, 404, "subscription ")
        url = f"/teaming/subscriptions/{sid}"
        assert_error(await client.put(url, json={"expires": "x"}, headers=user.headers), 400)
        other = await User.open(client, "globex")
        assert_error(await client.get(url, headers=other.headers), 404, "subscription ")
        assert_error(await client.delete(url, headers=other.headers), 404, "subscription ")
        assert (await client.get(url, headers=user.headers)).status_code == 200
