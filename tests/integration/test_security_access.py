"""Issue 15, access that holds: an ended conference's name never reopens as an open room
(SIPp and a scripted phone are refused with 404, across a restart too), names stay their
tenant's and another tenant's refusal says nothing about whose they are, and the operator
(admin token) sees and controls every live room, rooms made by dialling included."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from bridge.events import BridgeEvent, ParticipantJoined
from bridge.tools.phone import Phone
from control.runtime import Runtime
from tests.integration.harness import (
    ADMIN_TOKEN,
    LOOPBACK,
    SCENARIOS,
    eventually,
    loopback_config,
    run_sipp,
    with_control,
)

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def start(data: Path) -> Runtime:
    return await Runtime(with_control(loopback_config(), data)).start()


def http(runtime: Runtime) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=runtime.base_url, timeout=10.0, trust_env=False)


async def token_for(client: httpx.AsyncClient, app: str) -> dict[str, str]:
    reply = await client.post(f"/v1/admin/applications/{app}/tokens", headers=ADMIN)
    assert reply.status_code == 201, reply.text
    return {"Authorization": f"Bearer {reply.json()['token']}"}


def phone(runtime: Runtime, room: str, user: str) -> Phone:
    return Phone(LOOPBACK, runtime.bridge.transports.udp_port, room, user=user)


def joins(runtime: Runtime) -> list[BridgeEvent]:
    seen: list[BridgeEvent] = []
    runtime.bridge.events.subscribe(
        lambda e: seen.append(e) if isinstance(e, ParticipantJoined) else None
    )
    return seen


async def test_ended_room_and_caller_conferences_never_reopen_open(tmp_path: Path) -> None:
    data = tmp_path / "data"
    runtime = await start(data)
    try:
        joined = joins(runtime)
        async with http(runtime) as client:
            acme = await token_for(client, "acme")
            for body in (
                {"name": "guarded", "access": "room", "code": "424242"},
                {"name": "vip", "access": "caller", "callers": ["+15550001"]},
            ):
                reply = await client.post("/v1/conferences", json=body, headers=acme)
                assert reply.status_code == 201, reply.text
            # while open, the rules hold: a stranger is not let into the caller-only room
            stranger = phone(runtime, "vip", "+15559999")
            assert await stranger.call() == 200  # answered to hear the refusal, then hung up
            await eventually(lambda: stranger.ended_by_bridge)
            await stranger.close()
            for name in ("guarded", "vip"):
                assert (
                    await client.delete(f"/v1/conferences/{name}", headers=acme)
                ).status_code == 204

        # the attacker's reproduction: SIPp dials the ended names and must get 404
        for name in ("guarded", "vip"):
            workdir = tmp_path / f"sipp-{name}"
            workdir.mkdir()
            scenario = ["-sf", str(SCENARIOS / "uac_expect_404.xml"), "-s", name, "-m", "1"]
            result = await run_sipp(runtime.bridge.transports.udp_port, scenario, workdir, 30)
            assert (result.successful, result.failed) == (1, 0), result.stdout + result.stderr
        listed = phone(runtime, "vip", "+15550001")  # even a listed caller: it is over
        assert await listed.call() == 404
        assert listed.last_final is not None and listed.last_final.phrase == "Conference has ended"
        await listed.close()
        assert [e for e in joined if e.room in ("guarded", "vip")] == []
        assert "guarded" not in runtime.bridge.control.participants("guarded")
    finally:
        await runtime.stop()

    # after a restart the names are still known to be ended (read from the database)
    runtime = await start(data)
    try:
        again = phone(runtime, "guarded", "+15550002")
        assert await again.call() == 404
        await again.close()
        async with http(runtime) as client:
            acme = await token_for(client, "acme")
            other = await token_for(client, "globex")
            # another tenant cannot take the name, and is told nothing about whose it is
            taken = await client.post("/v1/conferences", json={"name": "guarded"}, headers=other)
            ivr = await client.post("/v1/conferences", json={"name": "conference"}, headers=other)
            assert taken.status_code == ivr.status_code == 409
            assert taken.json() == {
                k: (v.replace("conference", "guarded") if isinstance(v, str) else v)
                for k, v in ivr.json().items()
            }
            # the owner may reuse it, with the new conference's own rules
            reused = await client.post(
                "/v1/conferences", json={"name": "guarded", "access": "room"}, headers=acme
            )
            assert reused.status_code == 201, reused.text
            assert reused.json()["code"] != "424242"
        caller = phone(runtime, "guarded", "+15550003")
        assert await caller.call() == 200  # answered into the code prompt, not the room
        await asyncio.sleep(1.0)
        assert runtime.bridge.control.participants("guarded") == []
        await caller.hangup()
    finally:
        await runtime.stop()


async def test_the_operator_sees_and_controls_rooms_made_by_dialling(tmp_path: Path) -> None:
    runtime = await start(tmp_path / "data")
    walker = phone(runtime, "walkin", "+15550100")
    try:
        async with http(runtime) as client:
            acme = await token_for(client, "acme")
            reply = await client.post("/v1/conferences", json={"name": "standup"}, headers=acme)
            assert reply.status_code == 201
            assert await walker.call() == 200
            await eventually(lambda: len(runtime.bridge.control.participants("walkin")) == 1)

            # a tenant sees nothing of it, and cannot take its name while people are in it
            hidden = await client.get("/v1/conferences/walkin/participants", headers=acme)
            missing = await client.get("/v1/conferences/nosuch/participants", headers=acme)
            assert hidden.status_code == missing.status_code == 404
            taken = await client.post("/v1/conferences", json={"name": "walkin"}, headers=acme)
            assert taken.status_code == 409 and "not available" in taken.json()["message"]

            # the operator sees every live room and who is in it
            assert (await client.get("/v1/admin/rooms", headers=acme)).status_code == 401
            rooms = {
                r["name"]: r for r in (await client.get("/v1/admin/rooms", headers=ADMIN)).json()
            }
            assert rooms["walkin"]["origin"] == "dialled" and rooms["walkin"]["participants"] == 1
            assert rooms["standup"]["origin"] == "conference"
            assert rooms["standup"]["application"] == "acme"
            people = await client.get("/v1/admin/rooms/walkin/participants", headers=ADMIN)
            (person,) = people.json()
            assert person["caller"] == "+15550100"
            url = f"/v1/admin/rooms/walkin/participants/{person['id']}"
            muted = await client.patch(url, json={"muted": True}, headers=ADMIN)
            assert muted.status_code == 200 and muted.json()["muted"] is True
            bad = await client.patch(url, json={"muted": "maybe"}, headers=ADMIN)
            assert bad.status_code == 400
            assert (await client.delete(url, headers=ADMIN)).status_code == 204
            await eventually(lambda: walker.ended_by_bridge)
            gone = await client.get("/v1/admin/rooms/walkin/participants", headers=ADMIN)
            assert gone.status_code == 404
            assert (await client.delete(url, headers=ADMIN)).status_code == 404
    finally:
        await walker.close()
        await runtime.stop()
