"""Issue 4 end to end: the HTTP API with a real client against the running bridge, tenants kept
apart, conference states with an injected clock, participants muted and ejected through the API
(checked by FFT and by SIPp seeing the BYE), webhooks in order, and a restart losing nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
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



async def start(tmp_path: Path, clock: FakeClock | None = None) -> Runtime:
    return await Runtime(with_control(loopback_config(), tmp_path / "data"), clock).start()


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    running = await start(tmp_path)
    try:
        yield running
    finally:
        await running.stop()


async def token_for(client: httpx.AsyncClient, app: str) -> dict[str, str]:
    reply = await client.post(
        f"/v1/admin/applications/{app}/tokens", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert reply.status_code == 201, reply.text
    return {"Authorization": f"Bearer {reply.json()['token']}"}


async def create(client: httpx.AsyncClient, headers: dict[str, str], name: str) -> None:
    reply = await client.post("/v1/conferences", json={"name": name}, headers=headers)
    assert reply.status_code == 201, reply.text


def http(runtime: Runtime) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=runtime.base_url, timeout=10.0, trust_env=False)




def spy(port: object, method: str) -> list[tuple[Any, ...]]:
    """Record the arguments of every call the control plane makes to one method of the
    bridge's control port (the call still goes through)."""
    seen: list[tuple[Any, ...]] = []
    original = getattr(port, method)

    def recording(*args: Any, **kwargs: Any) -> Any:
        seen.append(args)
        return original(*args, **kwargs)

    setattr(port, method, recording)
    return seen


def phone(runtime: Runtime, room: str, user: str, tone: float | None = None) -> Phone:
    return Phone(LOOPBACK, runtime.bridge.transports.udp_port, room, tone_hz=tone, user=user)


# --- 1. the API with a real HTTP client --------------------------------------------------------


async def test_conference_crud_pagination_and_tenants_apart(runtime: Runtime) -> None:
    async with http(runtime) as client:
        acme, other = await token_for(client, "acme"), await token_for(client, "globex")
        for i in range(5):
            reply = await client.post(
                "/v1/conferences",
                json={"name": f"room{i}", "access": "room", "duration_minutes": 30},
                headers=acme,
            )
            assert reply.status_code == 201, reply.text
            created = reply.json()
            assert created["state"] == "HOLDING" and created["code"].isdigit()
            assert created["dial_in"].startswith(f"sip:room{i}@127.0.0.1:")

        page = await client.get("/v1/conferences?offset=1&limit=2", headers=acme)
        assert page.status_code == 200
        assert [c["name"] for c in page.json()] == ["room1", "room2"]
        assert page.headers["X-Total-Count"] == "5" and page.headers["X-Result-Count"] == "2"

        generated = await client.post("/v1/conferences", json={}, headers=other)
        assert generated.status_code == 201
        assert generated.json()["name"]
        listing = await client.get("/v1/conferences", headers=other)
        assert listing.headers["X-Total-Count"] == "1"

        modified = await client.patch(
            "/v1/conferences/room0", json={"extend_minutes": 15, "locked": True}, headers=acme
        )
        assert modified.status_code == 200, modified.text
        assert modified.json()["duration_minutes"] == 45 and modified.json()["locked"] is True

        # tenant B can neither read nor touch tenant A's room, nor take its name
        assert (await client.get("/v1/conferences/room0", headers=other)).status_code == 404
        patch = await client.patch("/v1/conferences/room0", json={"locked": False}, headers=other)
        assert patch.status_code == 404
        taken = await client.post("/v1/conferences", json={"name": "room0"}, headers=other)
        assert taken.status_code == 409
        assert (await client.delete("/v1/conferences/room0", headers=other)).status_code == 404
        assert (await client.get("/v1/conferences/room0", headers=acme)).status_code == 200

        assert (await client.delete("/v1/conferences/room0", headers=acme)).status_code == 204
        ended = (await client.get("/v1/conferences/room0", headers=acme)).json()
        assert ended["state"] == "COMPLETED" and ended["end_reason"] == "ended by API"

        assert (await client.get("/v1/conferences")).status_code == 401
        bad = await client.get("/v1/conferences", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401 and bad.json()["code"] == "unauthorized"
        assert (await client.get("/openapi.json")).json()["paths"]["/v1/conferences"]
        assert (await client.get("/docs")).status_code == 200


async def test_tenant_cannot_mute_another_tenants_participant(runtime: Runtime) -> None:
    async with http(runtime) as client:
        acme, other = await token_for(client, "acme"), await token_for(client, "globex")
        await create(client, acme, "private")
        caller = phone(runtime, "private", "alice", 440.0)
        try:
            assert await caller.call() == 200
            listed = (await client.get("/v1/conferences/private/participants", headers=acme)).json()
            (person,) = listed
            url = f"/v1/conferences/private/participants/{person['id']}"
            assert (await client.patch(url, json={"muted": True}, headers=other)).status_code == 404
            assert (await client.get(url, headers=acme)).json()["muted"] is False
        finally:
            await caller.hangup()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "bad name"}, "name"),
        ({"name": "x" * 33}, "name"),
        ({"name": "ok", "duration_minutes": -5}, "duration_minutes"),
        ({"name": "ok", "access": "everyone"}, "access"),
        ({"name": "ok", "start_time": "2001-01-01T00:00:00Z"}, "start_time"),
        ({"name": "ok", "start_time": "tomorrow"}, "start_time"),
        ({"name": "ok", "colour": "blue"}, "colour"),
        ({"name": "ok", "max_participants": 1}, "max_participants"),
        ({"name": "ok", "code": "12ab"}, "code"),
        ({"name": "ok", "access": "caller"}, "callers"),
        ({"name": "ok", "divert_to": "not a target"}, "divert_to"),
    ],
)
async def test_bad_fields_get_400_naming_the_field(
    runtime: Runtime, body: dict[str, Any], field: str
) -> None:
    async with http(runtime) as client:
        acme = await token_for(client, "acme")
        reply = await client.post("/v1/conferences", json=body, headers=acme)
        assert reply.status_code == 400, reply.text
        error = reply.json()
        assert set(error) == {"code", "message", "description"}
        assert error["message"].startswith(f"{field}:"), error
        assert (await client.get("/v1/health")).status_code == 200


async def test_bad_json_and_bad_paging_get_400(runtime: Runtime) -> None:
    async with http(runtime) as client:
        acme = await token_for(client, "acme")
        headers = {**acme, "Content-Type": "application/json"}
        reply = await client.post("/v1/conferences", content=b"{not json", headers=headers)
        assert reply.status_code == 400 and "JSON" in reply.json()["message"]
        reply = await client.get("/v1/conferences?limit=100000", headers=acme)
        assert reply.status_code == 400 and reply.json()["message"].startswith("limit:")
        reply = await client.get("/v1/conferences?offset=-1", headers=acme)
        assert reply.status_code == 400 and reply.json()["message"].startswith("offset:")
        reply = await client.post(
            "/v1/subscriptions",
            json={"callback_url": "ftp://example.org/x", "events": ["nope"]},
            headers=acme,
        )
        assert reply.status_code == 400 and "callback_url" in reply.json()["message"]
        assert (await client.get("/v1/conferences", headers=acme)).status_code == 200


# --- 2. states with an injected clock -----------------------------------------------------------


async def test_reservation_states_warning_and_end(tmp_path: Path) -> None:
    clock = FakeClock()
    running = await start(tmp_path, clock)
    assert running.plane is not None
    callers: list[Phone] = []
    try:
        async with http(running) as client:
            acme = await token_for(client, "acme")
            start_at = clock.now + timedelta(minutes=10)
            for name, divert in (("board", None), ("board2", "lobby")):
                reply = await client.post(
                    "/v1/conferences",
                    json={
                        "name": name,
                        "start_time": start_at.isoformat(),
                        "duration_minutes": 15,
                        **({"divert_to": divert} if divert else {}),
                    },
                    headers=acme,
                )
                assert reply.status_code == 201 and reply.json()["state"] == "RESERVED"

            early = phone(running, "board", "early")
            assert await early.call() == 486
            diverted = phone(running, "board2", "early2")
            assert await diverted.call() == 302
            assert diverted.last_final is not None
            assert "sip:lobby@127.0.0.1" in diverted.last_final.headers["Contact"]

            async def state() -> str:
                return (await client.get("/v1/conferences/board", headers=acme)).json()["state"]

            clock.advance(minutes=10)
            running.plane.wake_scheduler()
            await asyncio.sleep(0.2)
            assert await state() == "HOLDING"

            callers = [phone(running, "board", "a", 440.0), phone(running, "board", "b", 1000.0)]
            assert await callers[0].call() == 200
            await asyncio.sleep(0.3)
            assert await state() == "HOLDING"  # one caller waits, hearing nothing
            assert await callers[1].call() == 200
            await eventually(lambda: running.plane.conferences["board"].state == "ACTIVE")

            played = spy(running.bridge.control, "play_to_room")
            forgotten = spy(running.bridge.control, "forget_room")
            clock.advance(minutes=14)  # one minute before the end: the warning
            running.plane.wake_scheduler()
            await eventually(lambda: ("board", "warning") in played)
            assert running.plane.conferences["board"].warned

            clock.advance(minutes=1)  # the end: everyone hung up with BYE
            running.plane.wake_scheduler()
            await eventually(lambda: all(c.ended_by_bridge for c in callers))
            assert await state() == "COMPLETED"
            assert "board" in {room for room, _ in forgotten}  # its rules left the bridge
    finally:
        for caller in callers:
            await caller.hangup()
        await running.stop()


# --- 3. end to end: SIPp callers, API mute by FFT, eject, webhooks in order ----------------------


async def test_sipp_callers_listed_muted_ejected_with_webhooks(
    runtime: Runtime, tmp_path: Path
) -> None:
    receiver = Receiver()
    await receiver.start()
    loop = asyncio.get_running_loop()
    port = runtime.bridge.transports.udp_port
    tones = [440.0, 1000.0, 1700.0]
    sipps: list[asyncio.Task[Any]] = []
    listener = phone(runtime, "e2e", "listener")
    try:
        async with http(runtime) as client:
            acme = await token_for(client, "acme")
            await create(client, acme, "e2e")
            hook = await client.post(
                "/v1/subscriptions",
                json={
                    "callback_url": receiver.url(),
                    "events": ["participant.joined", "participant.muted", "participant.left"],
                },
                headers=acme,
            )
            assert hook.status_code == 201, hook.text
            for tone in tones:
                workdir = tmp_path / f"sipp{int(tone)}"
                workdir.mkdir()
                (workdir / "tone.ulaw").write_bytes(ulaw_encode(sine(tone, 1.0, amplitude=6000)))
                scenario = ["-sf", str(SCENARIOS / "uac_tone_until_bye.xml"), "-s", "e2e"]
                sipps.append(
                    asyncio.create_task(
                        run_sipp(port, [*scenario, "-m", "1", "-l", "1"], workdir, timeout=60)
                    )
                )
            await eventually(lambda: len(runtime.bridge.control.participants("e2e")) == 3)
            assert await listener.call() == 200

            people = (await client.get("/v1/conferences/e2e/participants", headers=acme)).json()
            assert len(people) == 4
            sipp_people = [p for p in people if p["caller"] == "sipp"]
            assert len(sipp_people) == 3 and all(p["codec"] == "PCMU" for p in sipp_people)

            await asyncio.sleep(2.0)
            now = loop.time()
            heard = tone_levels(listener.audio(now - 1.5, now), tones)
            assert all(level > HEARD_DB for level in heard.values()), heard

            # mute the 1000 Hz caller: find it by what each SIPp caller sends (its own tone)
            target = None
            for person in sipp_people:
                muted = await client.patch(
                    f"/v1/conferences/e2e/participants/{person['id']}",
                    json={"muted": True},
                    headers=acme,
                )
                assert muted.status_code == 200 and muted.json()["muted"] is True
                await asyncio.sleep(1.2)
                t = loop.time()
                if tone_levels(listener.audio(t - 0.8, t), [1000.0])[1000.0] < ABSENT_DB:
                    target = person["id"]
                    break
                unmuted = await client.patch(
                    f"/v1/conferences/e2e/participants/{person['id']}",
                    json={"muted": False},
                    headers=acme,
                )
                assert unmuted.status_code == 200
            assert target is not None
            muted_now = runtime.bridge.control.find_participant("e2e", target)
            assert muted_now is not None and muted_now.muted
            t = loop.time()
            others = tone_levels(listener.audio(t - 0.8, t), [440.0, 1700.0])
            assert all(level > HEARD_DB for level in others.values()), others

            for person in sipp_people:
                ejected = await client.delete(
                    f"/v1/conferences/e2e/participants/{person['id']}", headers=acme
                )
                assert ejected.status_code == 204
            results = await asyncio.gather(*sipps)
            for result in results:
                assert result.successful == 1 and result.failed == 0, result.stderr[-500:]
            sipps = []
            missing = await client.delete(
                f"/v1/conferences/e2e/participants/{target}", headers=acme
            )
            assert missing.status_code == 404

            await listener.hangup()
            left = lambda: [b for b in receiver.delivered if b["type"] == "participant.left"]  # noqa: E731
            await eventually(lambda: len(left()) == 4, timeout=10)
            kinds = [(b["type"], b["data"].get("participant_id")) for b in receiver.delivered]
            joined = [p for kind, p in kinds if kind == "participant.joined"]
            assert len(joined) == 4
            assert [k for k, _ in kinds].count("participant.muted") >= 1
            assert ("participant.muted", target) in kinds
            # per participant, joined comes before muted, which comes before left
            for pid in joined:
                order = [k for k, p in kinds if p == pid]
                assert order[0] == "participant.joined" and order[-1] == "participant.left"
    finally:
        for task in sipps:
            task.cancel()
        await listener.hangup()
        await receiver.close()


# --- 4. restart: a reservation and a pending webhook survive -----------------------------------


async def test_restart_keeps_reservations_and_delivers_pending_events(tmp_path: Path) -> None:
    receiver = Receiver()
    await receiver.start()
    url = receiver.url()
    await receiver.close()  # the receiver is down while the event happens
    running = await start(tmp_path)
    async with http(running) as client:
        acme = await token_for(client, "acme")
        start_at = datetime.now(UTC) + timedelta(hours=2)
        reply = await client.post(
            "/v1/conferences",
            json={"name": "later", "start_time": start_at.isoformat(), "duration_minutes": 60},
            headers=acme,
        )
        assert reply.status_code == 201
        await create(client, acme, "now")
        hook = await client.post("/v1/subscriptions", json={"callback_url": url}, headers=acme)
        assert hook.status_code == 201
        caller = phone(running, "now", "alice")
        assert await caller.call() == 200
        await caller.hangup()
    await running.stop()

    receiver = Receiver()
    await receiver.start(receiver_port := int(url.split(":")[2].split("/")[0]))
    assert receiver.port == receiver_port
    restarted = await start(tmp_path)
    try:
        async with http(restarted) as client:
            acme = await token_for(client, "acme")
            later = (await client.get("/v1/conferences/later", headers=acme)).json()
            assert later["state"] == "RESERVED"
            assert later["start_time"].startswith(start_at.isoformat()[:16])
            early = phone(restarted, "later", "bob")
            assert await early.call() == 486  # still booked after the restart
        await eventually(lambda: len(receiver.delivered) >= 5, timeout=20)
        kinds = [body["type"] for body in receiver.delivered]
        # everything that happened while the receiver was down, in order
        assert [k for k in kinds if k.startswith("participant.")][:2] == [
            "participant.joined",
            "participant.left",
        ]
        assert "call.ended" in kinds and "conference.state_changed" in kinds
    finally:
        await restarted.stop()
        await receiver.close()


async def test_metrics_and_live_events(runtime: Runtime) -> None:
    async with http(runtime) as client:
        acme = await token_for(client, "acme")
        await create(client, acme, "live")
        seen: list[str] = []

        async def watch() -> None:
            async with client.stream(
                "GET", "/v1/events?types=participant.joined,participant.left", headers=acme
            ) as stream:
                async for line in stream.aiter_lines():
                    if line.startswith("event: "):
                        seen.append(line[7:])
                        if len(seen) == 2:
                            return

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.2)
        caller = phone(runtime, "live", "carol", 440.0)
        assert await caller.call() == 200
        await asyncio.sleep(0.5)
        metrics = (await client.get("/metrics")).text
        assert "confbridge_participants 1.0" in metrics
        assert "confbridge_tick_lateness_seconds_count" in metrics
        assert "confbridge_srtp_rejected_total 0.0" in metrics
        assert "confbridge_rtp_frames_concealed_total" in metrics
        assert "confbridge_rtp_frames_trimmed_total" in metrics
        assert "process_cpu_seconds_total" in metrics
        assert 'confbridge_api_requests_total{method="POST",status="201"}' in metrics
        await caller.hangup()
        await asyncio.wait_for(watcher, 5)
        assert seen == ["participant.joined", "participant.left"]
        for _ in range(50):
            records = (await client.get("/v1/calls", headers=acme)).json()
            if records:
                break
            await asyncio.sleep(0.1)
        (record,) = records
        assert record["caller"] == "carol" and record["conference"] == "live"
        assert record["answered_at"] and record["ended_at"] and record["duration_s"] > 0
