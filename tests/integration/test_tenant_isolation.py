"""Issue 15, check 6: tenant isolation. Application A has a conference with a participant in it,
a caller list, a subscription, a call out, a call record and a recording; application B asks
for each of them through every native route and the dialects: each answer is a 404 that looks
exactly like the answer for a thing that does not exist (same status, same body once the names
are swapped). A's things are untouched afterwards."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge.tools.phone import Phone
from control.runtime import Runtime
from tests.integration.harness import (
    ADMIN_TOKEN,
    LOOPBACK,
    eventually,
    loopback_config,
    with_control,
)

pytestmark = pytest.mark.integration


@dataclass
class Owned:
    """A's things, by the identifiers another tenant might try, and made-up ones alike."""

    room: str
    participant: str
    subscription: str
    dialout: str
    call: str
    recording: str
    reservation: str


MISSING = Owned("nosuchroom", "p-nosuch", "s-nosuch", "d-nosuch", "c-nosuch",
                "nosuch.wav", "r-nosuch")  # fmt: skip


@dataclass
class World:
    runtime: Runtime
    client: httpx.AsyncClient
    a: dict[str, str]
    b: dict[str, str]
    b_token: str
    owned: Owned


async def token(client: httpx.AsyncClient, app: str) -> str:
    reply = await client.post(
        f"/v1/admin/applications/{app}/tokens", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert reply.status_code == 201, reply.text
    return str(reply.json()["token"])


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    config = with_control(loopback_config(), tmp_path / "data")
    recording = dataclasses.replace(config.recording, dir=str(tmp_path / "recordings"))
    runtime = await Runtime(dataclasses.replace(config, recording=recording)).start()
    port = runtime.bridge.transports.udp_port
    member = Phone(LOOPBACK, port, "alpha", tone_hz=440.0, user="+15550001")
    async with httpx.AsyncClient(base_url=runtime.base_url, trust_env=False) as client:
        a_token, b_token = await token(client, "appa"), await token(client, "appb")
        a = {"Authorization": f"Bearer {a_token}"}
        b = {"Authorization": f"Bearer {b_token}"}
        start = "2031-01-01T09:00:00Z"
        reserved = await client.post(
            "/v1/conferences", json={"name": "later", "start_time": start}, headers=a
        )
        spec = {"name": "alpha", "access": "room+caller", "callers": ["+15550001"]}
        made = await client.post("/v1/conferences", json=spec, headers=a)
        assert made.status_code == 201, made.text
        # a call record: a caller that came and went
        visitor = Phone(LOOPBACK, port, "alpha", user="+15550001")
        assert await visitor.call() == 200
        await asyncio.sleep(0.3)
        await visitor.hangup()
        await visitor.close()
        assert await member.call() == 200
        await eventually(lambda: len(runtime.bridge.control.participants("alpha")) == 1)
        (person,) = (await client.get("/v1/conferences/alpha/participants", headers=a)).json()
        hook = await client.post("/v1/subscriptions", headers=a,
                                 json={"callback_url": "http://127.0.0.1:9/hook"})  # fmt: skip
        out = await client.post("/v1/conferences/alpha/calls", headers=a,
                                json={"dest": "sip:nobody@127.0.0.1:9"})  # fmt: skip
        recording = await client.post("/v1/conferences/alpha/recording", headers=a, json={})
        assert recording.status_code == 201, recording.text
        await asyncio.sleep(0.5)
        stopped = await client.delete("/v1/conferences/alpha/recording", headers=a)
        assert stopped.status_code == 204, stopped.text
        files = (await client.get("/v1/conferences/alpha/recordings", headers=a)).json()

        async def has_record() -> bool:
            return bool((await client.get("/v1/calls", headers=a)).json())

        for _ in range(100):
            if await has_record():
                break
            await asyncio.sleep(0.1)
        (record, *_) = (await client.get("/v1/calls", headers=a)).json()
        owned = Owned(
            "alpha", person["id"], hook.json()["id"], out.json()["txn_refs"][0], record["id"],
            files[0]["file"], reserved.json()["id"],
        )  # fmt: skip
        try:
            yield World(runtime, client, a, b, b_token, owned)
        finally:
            await member.hangup()
            await member.close()
            await runtime.stop()


def unstamped(text: str) -> str:
    """Aculab's error bodies carry the time of the answer: two answers may straddle a second."""
    return re.sub(r"\d{4}-\d\d-\d\d_\d\d:\d\d:\d\d", "<time>", text)


def swap(text: str, owned: Owned) -> str:
    for theirs, missing in zip(vars(owned).values(), vars(MISSING).values(), strict=True):
        text = text.replace(theirs, missing)
    return text


def alike(theirs: httpx.Response, missing: httpx.Response, owned: Owned) -> bool:
    """The answer about A's thing, its names swapped, is the answer about nothing."""
    return unstamped(swap(theirs.text, owned)) == unstamped(missing.text)


NATIVE = [
    ("GET", "/v1/conferences/{room}", None),
    ("PATCH", "/v1/conferences/{room}", {"locked": True}),
    ("DELETE", "/v1/conferences/{room}", None),
    ("GET", "/v1/conferences/{room}/callers", None),
    ("POST", "/v1/conferences/{room}/callers", {"number": "+15559999"}),
    ("DELETE", "/v1/conferences/{room}/callers/+15550001", None),
    ("GET", "/v1/conferences/{room}/participants", None),
    ("GET", "/v1/conferences/{room}/participants/{participant}", None),
    ("PATCH", "/v1/conferences/{room}/participants/{participant}", {"muted": True}),
    ("DELETE", "/v1/conferences/{room}/participants/{participant}", None),
    ("POST", "/v1/conferences/{room}/participants/{participant}/transfer",
     {"target": "sip:x@127.0.0.1:9"}),
    ("POST", "/v1/conferences/{room}/calls", {"dest": "sip:x@127.0.0.1:9"}),
    ("GET", "/v1/conferences/{room}/calls", None),
    ("GET", "/v1/dialouts/{dialout}", None),
    ("POST", "/v1/conferences/{room}/recording", {}),
    ("DELETE", "/v1/conferences/{room}/recording", None),
    ("GET", "/v1/conferences/{room}/recordings", None),
    ("GET", "/v1/conferences/{room}/recordings/{recording}", None),
    ("GET", "/v1/subscriptions/{subscription}", None),
    ("PUT", "/v1/subscriptions/{subscription}", {"expires_in_s": 3600}),
    ("DELETE", "/v1/subscriptions/{subscription}", None),
]  # fmt: skip


async def ask(world: World, method: str, path: str, body: Any, things: Owned) -> httpx.Response:
    url = path.format(**vars(things))
    return await world.client.request(method, url, json=body, headers=world.b)


@pytest.mark.parametrize(("method", "path", "body"), NATIVE, ids=[f"{m} {p}" for m, p, _ in NATIVE])
async def test_native_routes(world: World, method: str, path: str, body: Any) -> None:
    theirs = await ask(world, method, path, body, world.owned)
    missing = await ask(world, method, path, body, MISSING)
    assert theirs.status_code == missing.status_code == 404, (theirs.text, missing.text)
    assert alike(theirs, missing, world.owned), (theirs.text, missing.text)
    # A's things are still there and unchanged
    a = world.a
    conference = await world.client.get("/v1/conferences/alpha", headers=a)
    assert conference.status_code == 200 and conference.json()["locked"] is False
    assert conference.json()["callers"] == ["+15550001"]
    people = (await world.client.get("/v1/conferences/alpha/participants", headers=a)).json()
    assert [p["id"] for p in people] == [world.owned.participant] and not people[0]["muted"]
    hook = await world.client.get(f"/v1/subscriptions/{world.owned.subscription}", headers=a)
    assert hook.status_code == 200


async def test_lists_show_nothing_of_another_tenant(world: World) -> None:
    """Call records have no route by id: the list is where another tenant's would show."""
    b = world.b
    assert (await world.client.get("/v1/conferences", headers=b)).json() == []
    assert (await world.client.get("/v1/subscriptions", headers=b)).json() == []
    assert (await world.client.get("/v1/calls", headers=b)).json() == []


async def test_aculab(world: World) -> None:
    auth = ("appb", world.b_token)

    async def ask_aculab(path: str, **params: str) -> httpx.Response:
        return await world.client.get(f"/aculab/{path}", params=params, auth=auth)

    for path, field in (
        ("conference_participant_list", "conference_name"),
        ("conference_reservation_remove", "reservation_token"),
        ("conference_reservation_modify", "reservation_token"),
    ):
        extra = {"duration": "15"} if path.endswith("modify") else {}
        key = "room" if field == "conference_name" else "reservation"
        theirs = await ask_aculab(path, **{field: getattr(world.owned, key)}, **extra)
        missing = await ask_aculab(path, **{field: getattr(MISSING, key)}, **extra)
        assert theirs.status_code == missing.status_code == 404, (path, theirs.text)
        assert alike(theirs, missing, world.owned), (path, theirs.text, missing.text)
    for path in ("conference_participant_set_options", "conference_participant_eject"):
        params = {"conference_name": "alpha", "participant_id": world.owned.participant,
                  "muted": "true"}  # fmt: skip
        theirs = await ask_aculab(path, **params)
        missing = await ask_aculab(path, **{**params, "conference_name": "nosuchroom",
                                            "participant_id": "p-nosuch"})  # fmt: skip
        assert theirs.status_code == missing.status_code == 404, (path, theirs.text)
        assert alike(theirs, missing, world.owned), (path, theirs.text, missing.text)


async def test_orange(world: World) -> None:
    for verb, params in (
        ("addCaller.json", {"caller": "+15559999"}),
        ("createCall.json", {"from": "+15559999"}),
    ):
        base = {"id": world.b_token, **params}
        theirs_params = {**base, "conference_id": "alpha", "to": "alpha"}
        missing_params = {**base, "conference_id": "nosuchroom", "to": "nosuchroom"}
        theirs = await world.client.get(f"/conf/{verb}", params=theirs_params)
        missing = await world.client.get(f"/conf/{verb}", params=missing_params)
        assert theirs.status_code == missing.status_code, (verb, theirs.text)  # Orange: 200
        assert '"status_code": 404' in theirs.text, (verb, theirs.text)  # ...and 404 inside
        assert alike(theirs, missing, world.owned), (verb, theirs.text, missing.text)


async def test_teaming(world: World) -> None:
    b = {"Authorization": f"Bearer {world.b_token}"}
    for method, path in (
        ("DELETE", "/teaming/users/appb/calls/{participant}"),
        ("PUT", "/teaming/users/appb/calls/{participant}?action=HOLD"),
        ("PUT", "/teaming/users/appb/calls/{participant}?action=ANSWER"),
    ):
        theirs = await world.client.request(method, path.format(**vars(world.owned)), headers=b)
        missing = await world.client.request(method, path.format(**vars(MISSING)), headers=b)
        assert theirs.status_code == missing.status_code, (path, theirs.text, missing.text)
        assert theirs.status_code in (404, 400), (path, theirs.text)
        assert alike(theirs, missing, world.owned), (path, theirs.text, missing.text)
