"""The Aculab dialect (seed 004) against the running product: the document's example requests
replayed on loopback and checked field by field, every limit at both edges, the same
reservation seen through the native API and confctl, a participant muted through Aculab and
checked by FFT, and every error the document's operations can produce."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge.media.tones import tone_levels
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

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
HEARD_DB = -30.0
ABSENT_DB = -50.0
LONG = "%Y-%m-%d_%H:%M:%S"
SHORT = "%Y-%m-%d-%H-%M"
EXAMPLE_TOKEN_KEYS = {"reservation_token"}
ERROR_KEYS = {"code", "text", "datetime", "link"}

Auth = tuple[str, str]



async def start(tmp_path: Path, clock: FakeClock) -> Runtime:
    return await Runtime(with_control(loopback_config(), tmp_path / "data"), clock).start()


def http(runtime: Runtime) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=runtime.base_url, timeout=10.0, trust_env=False)


async def app_token(client: httpx.AsyncClient, app: str) -> str:
    reply = await client.post(
        f"/v1/admin/applications/{app}/tokens", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert reply.status_code == 201, reply.text
    token: str = reply.json()["token"]
    return token


async def aculab(
    client: httpx.AsyncClient,
    action: str,
    auth: Auth | None,
    params: dict[str, Any] | list[tuple[str, Any]] | None = None,
    verb: str = "GET",
) -> httpx.Response:
    """One service action: GET with a query, POST with a query ("POST-query") or a form."""
    url = f"/aculab/{action}"
    if verb == "POST":
        return await client.post(url, data=params, auth=auth)
    method = "POST" if verb == "POST-query" else "GET"
    return await client.request(method, url, params=params, auth=auth)


async def reserve(
    client: httpx.AsyncClient, auth: Auth, clock: FakeClock, name: str, **given: Any
) -> httpx.Response:
    """conference_reservation_create with defaults: 10 minutes ahead, 15 minutes, 40 people."""
    params = {
        "conference_name": name,
        "max_participants": 40,
        "start_time": (clock.now + timedelta(minutes=10)).strftime(LONG),
        "duration": 15,
        **given,
    }
    return await aculab(client, "conference_reservation_create", auth, params)


async def token_of(client: httpx.AsyncClient, auth: Auth, clock: FakeClock, name: str) -> str:
    reply = await reserve(client, auth, clock, name)
    assert reply.status_code == 200, reply.text
    token: str = reply.json()["reservation_token"]
    return token


async def listing(client: httpx.AsyncClient, auth: Auth) -> dict[str, dict[str, Any]]:
    reply = await aculab(client, "conference_list", auth)
    assert reply.status_code == 200, reply.text
    return {c["conference_name"]: c for c in reply.json()}


def assert_error(reply: httpx.Response, status: int, code: str, mentions: str = "") -> None:
    """Aculab's error shape: {error: {code, text, datetime, link}, request: {url, datetime}}."""
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert set(body) == {"error", "request"}, body
    assert set(body["error"]) == ERROR_KEYS, body
    assert body["error"]["code"] == code, body
    assert mentions in body["error"]["text"], body
    assert body["request"]["url"] == reply.request.url.path
    for moment in (body["error"]["datetime"], body["request"]["datetime"]):
        datetime.strptime(moment, LONG)
    if code[0].isdigit():
        assert body["error"]["link"].endswith(f"error={code}")




def phone(runtime: Runtime, room: str, user: str, tone: float | None = None) -> Phone:
    return Phone(LOOPBACK, runtime.bridge.transports.udp_port, room, tone_hz=tone, user=user)


def state_of(runtime: Runtime, name: str) -> str | None:
    assert runtime.plane is not None
    conference = runtime.plane.conferences.get(name)
    return None if conference is None else conference.state


def participant_id(runtime: Runtime, room: str, caller: str) -> str:
    (person,) = [p for p in runtime.bridge.control.participants(room) if p.caller == caller]
    return person.id


async def to_start(runtime: Runtime, clock: FakeClock, name: str, **delta: float) -> None:
    """Move the clock to a reservation's start and wait for the scheduler to see it."""
    assert runtime.plane is not None
    clock.advance(**delta)
    runtime.plane.wake_scheduler()
    await eventually(lambda: state_of(runtime, name) == "HOLDING")


async def hang_up(phones: list[Phone]) -> None:
    for each in phones:
        await each.hangup()


# --- 1. the document's examples, replayed ------------------------------------------------------


async def test_document_examples_replayed(tmp_path: Path) -> None:
    clock = FakeClock(datetime(2019, 6, 20, 15, 0, tzinfo=UTC))  # 15 min before the example
    runtime = await start(tmp_path, clock)
    phones: list[Phone] = []
    try:
        async with http(runtime) as client:
            token = await app_token(client, "acme")
            auth = ("1-2-0/acme", token)  # the document's cloudID/username form
            bearer = {"Authorization": f"Bearer {token}"}
            for name in ("AnotherConf2", "MyConf1"):  # the list example's unreserved rooms
                made = await client.post("/v1/conferences", json={"name": name}, headers=bearer)
                assert made.status_code == 201, made.text
            phones.append(phone(runtime, "AnotherConf2", "someone"))
            assert await phones[-1].call() == 200
            await eventually(lambda: state_of(runtime, "AnotherConf2") == "ACTIVE")

            created = await client.get(
                "/aculab/conference_reservation_create?conference_name=MyConferenceRoom"
                "&max_participants=130&start_time=2019-06-20_15:15:00&duration=30"
                "&divert=MyEarlyAnnouncement",
                auth=auth,
            )
            assert created.status_code == 200, created.text
            assert set(created.json()) == EXAMPLE_TOKEN_KEYS
            reservation = created.json()["reservation_token"]
            assert isinstance(reservation, str) and reservation

            early = phone(runtime, "MyConferenceRoom", "early")  # diverted, not busied
            assert await early.call() == 302
            assert early.last_final is not None
            assert "sip:MyEarlyAnnouncement@127.0.0.1" in early.last_final.headers["Contact"]

            reply = await client.get("/aculab/conference_list", auth=auth)
            assert reply.status_code == 200
            assert reply.json() == [
                {"conference_name": "AnotherConf2", "max_participants": 40, "status": "ACTIVE"},
                {"conference_name": "MyConf1", "max_participants": 40, "status": "HOLDING"},
                {
                    "reservation_token": reservation,
                    "conference_name": "MyConferenceRoom",
                    "max_participants": 130,
                    "start_time": "2019-06-20-15-15",
                    "start_datetime": "2019-06-20_15:15:00",
                    "duration": 30,
                    "divert": "MyEarlyAnnouncement",
                    "status": "RESERVED",
                },
            ]

            modified = await client.get(
                f"/aculab/conference_reservation_modify?reservation_token={reservation}"
                "&duration=45",
                auth=auth,
            )
            assert modified.status_code == 200 and modified.json() == {"extended": True}
            assert (await listing(client, auth))["MyConferenceRoom"]["duration"] == 75

            for user in ("first", "second"):
                phones.append(phone(runtime, "MyConf1", user))
                assert await phones[-1].call() == 200
            await eventually(lambda: state_of(runtime, "MyConf1") == "ACTIVE")
            people = await client.get(
                "/aculab/conference_participant_list?conference_name=MyConf1", auth=auth
            )
            assert people.status_code == 200
            body = people.json()
            assert set(body) == {"status", "participants"} and body["status"] == "ACTIVE"
            assert len(body["participants"]) == 2
            for person in body["participants"]:
                assert set(person) == {"participant_id", "muted", "dtmf_enabled"}
                assert isinstance(person["participant_id"], str)
                assert person["muted"] is False and person["dtmf_enabled"] is True

            first = participant_id(runtime, "MyConf1", "first")
            options = await client.get(
                f"/aculab/conference_participant_set_options?conference_name=MyConf1"
                f"&participant_id={first}&muted=true&dtmf_enabled=false",
                auth=auth,
            )
            assert options.status_code == 200 and options.json() == {"options_set": True}
            after = await aculab(
                client, "conference_participant_list", auth, {"conference_name": "MyConf1"}
            )
            flags = {
                p["participant_id"]: (p["muted"], p["dtmf_enabled"])
                for p in after.json()["participants"]
            }
            assert flags[first] == (True, False)
            assert flags[participant_id(runtime, "MyConf1", "second")] == (False, True)

            ejected = await client.get(
                f"/aculab/conference_participant_eject?conference_name=MyConf1"
                f"&participant_id={first}",
                auth=auth,
            )
            assert ejected.status_code == 200 and ejected.json() == {"ejected": True}
            await eventually(lambda: phones[1].ended_by_bridge)

            removed = await client.get(
                f"/aculab/conference_reservation_remove?reservation_token={reservation}",
                auth=auth,
            )
            assert removed.status_code == 200 and removed.json() == {"removed": True}
            assert "MyConferenceRoom" not in await listing(client, auth)
    finally:
        await hang_up(phones)
        await runtime.stop()


@pytest.mark.parametrize("verb", ["GET", "POST", "POST-query"])
async def test_every_action_answers_get_and_post(tmp_path: Path, verb: str) -> None:
    clock = FakeClock(datetime(2030, 1, 1, 12, 0, tzinfo=UTC))
    runtime = await start(tmp_path, clock)
    try:
        async with http(runtime) as client:
            auth = ("acme", await app_token(client, "acme"))
            params = {
                "conference_name": "Verbs1",
                "max_participants": "50",
                "start_time": "2030-01-01-12-30",
                "duration": "60",
            }
            created = await aculab(client, "conference_reservation_create", auth, params, verb)
            assert created.status_code == 200, created.text
            token = created.json()["reservation_token"]
            listed = await aculab(client, "conference_list", auth, None, verb)
            assert [c["conference_name"] for c in listed.json()] == ["Verbs1"]
            assert "divert" not in listed.json()[0]  # only present when one was given
            by_token = {"reservation_token": token}
            people = await aculab(client, "conference_participant_list", auth, by_token, verb)
            assert people.json() == {"status": "RESERVED", "participants": []}
            extend = {**by_token, "duration": "15"}
            extended = await aculab(client, "conference_reservation_modify", auth, extend, verb)
            assert extended.json() == {"extended": True}
            assert (await listing(client, auth))["Verbs1"]["duration"] == 75
            removed = await aculab(client, "conference_reservation_remove", auth, by_token, verb)
            assert removed.json() == {"removed": True}
            assert await listing(client, auth) == {}
    finally:
        await runtime.stop()


# --- 2. every limit at both edges ---------------------------------------------------------------


async def test_create_limits_at_both_edges(tmp_path: Path) -> None:
    clock = FakeClock(datetime(2030, 1, 1, 12, 0, tzinfo=UTC))
    runtime = await start(tmp_path, clock)
    try:
        async with http(runtime) as client:
            auth = ("acme", await app_token(client, "acme"))
            at = clock.now
            cases: list[tuple[dict[str, Any], str | None]] = [
                ({"max_participants": 39}, "max_participants"),
                ({"max_participants": 40}, None),
                ({"max_participants": 350}, None),
                ({"max_participants": 351}, "max_participants"),
                ({"duration": 14}, "duration"),
                ({"duration": 15}, None),
                ({"duration": 480}, None),
                ({"duration": 481}, "duration"),
                ({"start_time": (at + timedelta(minutes=4)).strftime(LONG)}, "start_time"),
                ({"start_time": (at + timedelta(minutes=4)).strftime(SHORT)}, "start_time"),
                ({"start_time": (at + timedelta(minutes=5)).strftime(LONG)}, None),
                ({"start_time": (at + timedelta(minutes=5)).strftime(SHORT)}, None),
                ({"start_time": (at + timedelta(hours=24)).strftime(LONG)}, None),
                ({"start_time": (at + timedelta(hours=24)).strftime(SHORT)}, None),
                ({"start_time": (at + timedelta(hours=24, seconds=59)).strftime(LONG)}, None),
                ({"start_time": (at + timedelta(hours=24, minutes=1)).strftime(LONG)}, "start"),
                ({"start_time": (at + timedelta(hours=24, minutes=1)).strftime(SHORT)}, "start"),
            ]
            for i, (given, problem) in enumerate(cases):
                reply = await reserve(client, auth, clock, f"Edge{i}", **given)
                if problem is None:
                    assert reply.status_code == 200, (given, reply.text)
                else:
                    assert_error(reply, 400, "0002", problem)
            rooms = await listing(client, auth)
            assert rooms["Edge1"]["max_participants"] == 40
            assert rooms["Edge2"]["max_participants"] == 350
            assert rooms["Edge6"]["duration"] == 480
            assert rooms["Edge10"]["start_datetime"] == "2030-01-01_12:05:00"
            assert rooms["Edge11"]["start_time"] == "2030-01-01-12-05"
            assert rooms["Edge14"]["start_datetime"] == "2030-01-02_12:00:00"  # :59 dropped

            ok = await reserve(client, auth, clock, "A" * 47)
            assert ok.status_code == 200, ok.text
            assert "A" * 47 in await listing(client, auth)
            assert_error(await reserve(client, auth, clock, "B" * 48), 400, "0002", "48")
            assert_error(await reserve(client, auth, clock, "bad-name"), 400, "0002", "name")

            given = {"start_time": "2030-01-01_12:17:42"}  # rounded down to the minute
            assert (await reserve(client, auth, clock, "Rounded", **given)).status_code == 200
            rounded = (await listing(client, auth))["Rounded"]
            assert rounded["start_datetime"] == "2030-01-01_12:17:00"
            assert rounded["start_time"] == "2030-01-01-12-17"

            clock.advance(seconds=30)  # 12:00:30: 12:05:59 rounds to 12:05, 4.5 minutes ahead
            early = await reserve(client, auth, clock, "Late1", start_time="2030-01-01_12:05:59")
            assert_error(early, 400, "0002", "at least 5 minutes")
            fine = await reserve(client, auth, clock, "Late2", start_time="2030-01-01_12:06:00")
            assert fine.status_code == 200, fine.text
    finally:
        await runtime.stop()


async def test_extend_limits_at_both_edges(tmp_path: Path) -> None:
    clock = FakeClock(datetime(2030, 1, 1, 12, 0, tzinfo=UTC))
    runtime = await start(tmp_path, clock)
    try:
        async with http(runtime) as client:
            auth = ("acme", await app_token(client, "acme"))

            async def extend(token: str, minutes: int) -> httpx.Response:
                params = {"reservation_token": token, "duration": minutes}
                return await aculab(client, "conference_reservation_modify", auth, params)

            long_one = (await reserve(client, auth, clock, "Long", duration=420)).json()
            token = long_one["reservation_token"]
            assert_error(await extend(token, 14), 400, "0002", "between 15 and 60")
            assert_error(await extend(token, 61), 400, "0002", "between 15 and 60")
            assert (await extend(token, 60)).json() == {"extended": True}  # 480 in all
            assert (await listing(client, auth))["Long"]["duration"] == 480
            assert_error(await extend(token, 15), 400, "0002", "495")

            over = (await reserve(client, auth, clock, "Over", duration=421)).json()
            assert_error(await extend(over["reservation_token"], 60), 400, "0002", "481")

            short = (await reserve(client, auth, clock, "Short", duration=15)).json()
            assert (await extend(short["reservation_token"], 15)).json() == {"extended": True}
            assert (await listing(client, auth))["Short"]["duration"] == 30
    finally:
        await runtime.stop()


async def test_modify_and_remove_near_start_and_end(tmp_path: Path) -> None:
    clock = FakeClock(datetime(2030, 1, 1, 12, 0, tzinfo=UTC))
    runtime = await start(tmp_path, clock)
    try:
        async with http(runtime) as client:
            auth = ("acme", await app_token(client, "acme"))
            tokens = {name: await token_of(client, auth, clock, name) for name in ("R1", "R2")}

            async def remove(name: str) -> httpx.Response:
                params = {"reservation_token": tokens[name]}
                return await aculab(client, "conference_reservation_remove", auth, params)

            clock.advance(minutes=4, seconds=59)  # R1, R2 start in 5 min 1 s
            assert (await remove("R1")).json() == {"removed": True}
            clock.advance(seconds=2)  # R2 starts in 4 min 59 s
            assert_error(await remove("R2"), 409, "HTTP 409", "within 5 minutes")

            await to_start(runtime, clock, "R2", minutes=4, seconds=59)  # 12:10: R2 is HOLDING
            assert_error(await remove("R2"), 409, "HTTP 409", "HOLDING")

            async def extend(minutes: int = 15) -> httpx.Response:
                params = {"reservation_token": tokens["R2"], "duration": minutes}
                return await aculab(client, "conference_reservation_modify", auth, params)

            clock.advance(minutes=5)  # 12:15, R2 ends at 12:25: 10 minutes left
            assert (await extend()).json() == {"extended": True}  # now ends at 12:40
            clock.advance(minutes=20)  # exactly 5 minutes left
            assert (await extend()).json() == {"extended": True}  # now ends at 12:55
            clock.advance(minutes=15, seconds=1)  # 4 min 59 s left
            assert_error(await extend(), 409, "HTTP 409", "finish within 5 minutes")

            assert runtime.plane is not None
            clock.advance(minutes=5)
            runtime.plane.wake_scheduler()
            await eventually(lambda: state_of(runtime, "R2") is None)  # COMPLETED
            assert_error(await extend(), 409, "HTTP 409", "COMPLETED")
            assert_error(await remove("R2"), 409, "HTTP 409", "COMPLETED")
            rooms = await listing(client, auth)
            assert rooms["R2"]["status"] == "COMPLETED" and "R1" not in rooms
    finally:
        await runtime.stop()


# --- 3. cross-dialect: native API, confctl, and the audio ---------------------------------------


async def test_reservation_seen_by_native_api_and_confctl(tmp_path: Path) -> None:
    clock = FakeClock(datetime.now(UTC).replace(second=0, microsecond=0))
    runtime = await start(tmp_path, clock)
    try:
        async with http(runtime) as client:
            token = await app_token(client, "acme")
            auth, bearer = ("acme", token), {"Authorization": f"Bearer {token}"}
            start_at = clock.now + timedelta(minutes=30)
            reply = await reserve(
                client,
                auth,
                clock,
                "CrossRoom",
                max_participants=130,
                start_time=start_at.strftime(SHORT),
                duration=30,
                divert="Later",
            )
            reservation = reply.json()["reservation_token"]

            native = await client.get("/v1/conferences/CrossRoom", headers=bearer)
            assert native.status_code == 200, native.text
            seen = native.json()
            assert seen["id"] == reservation and seen["state"] == "RESERVED"
            assert seen["start_time"] == start_at.isoformat().replace("+00:00", "Z")
            assert seen["duration_minutes"] == 30 and seen["max_participants"] == 130
            assert seen["divert_to"] == "Later"

            patched = await client.patch(
                "/v1/conferences/CrossRoom", json={"extend_minutes": 15}, headers=bearer
            )
            assert patched.status_code == 200  # and the other way round
            assert (await listing(client, auth))["CrossRoom"]["duration"] == 45

            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "control.cli",
                "--url",
                runtime.base_url,
                "--token",
                token,
                "rooms",
                "--json",
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(process.communicate(), 60)
            assert process.returncode == 0, err.decode()
            (room,) = [c for c in json.loads(out) if c["name"] == "CrossRoom"]
            assert room["state"] == "RESERVED" and room["duration_minutes"] == 45
            assert room["max_participants"] == 130 and room["id"] == reservation
    finally:
        await runtime.stop()


async def test_mute_through_aculab_silences_the_participant(tmp_path: Path) -> None:
    clock = FakeClock(datetime.now(UTC).replace(second=0, microsecond=0))
    runtime = await start(tmp_path, clock)
    loop = asyncio.get_running_loop()
    alice = phone(runtime, "Muting", "alice", 440.0)
    bob = phone(runtime, "Muting", "bob", 1000.0)
    try:
        async with http(runtime) as client:
            auth = ("acme", await app_token(client, "acme"))
            start_at = (clock.now + timedelta(minutes=5)).strftime(LONG)
            assert (await reserve(client, auth, clock, "Muting", start_time=start_at)).is_success
            await to_start(runtime, clock, "Muting", minutes=5)
            assert await alice.call() == 200 and await bob.call() == 200
            await eventually(lambda: state_of(runtime, "Muting") == "ACTIVE")

            def levels(listener: Phone, tone: float) -> float:
                now = loop.time()
                return tone_levels(listener.audio(now - 0.8, now), [tone])[tone]

            await asyncio.sleep(1.5)
            assert levels(alice, 1000.0) > HEARD_DB and levels(bob, 440.0) > HEARD_DB

            people = await aculab(
                client, "conference_participant_list", auth, {"conference_name": "Muting"}
            )
            ids = {p["participant_id"] for p in people.json()["participants"]}
            target = participant_id(runtime, "Muting", "bob")
            assert target in ids and len(ids) == 2

            async def set_muted(value: str) -> None:
                params = {"conference_name": "Muting", "participant_id": target, "muted": value}
                reply = await aculab(client, "conference_participant_set_options", auth, params)
                assert reply.json() == {"options_set": True}
                await asyncio.sleep(1.2)

            await set_muted("true")
            assert levels(alice, 1000.0) < ABSENT_DB  # bob is no longer heard
            assert levels(bob, 440.0) > HEARD_DB  # bob still hears alice
            await set_muted("false")
            assert levels(alice, 1000.0) > HEARD_DB
    finally:
        await hang_up([alice, bob])
        await runtime.stop()


async def test_unreserved_room_holds_forty(tmp_path: Path) -> None:
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    runtime = await start(tmp_path, clock)
    late = phone(runtime, "Small", "fortyfirst")
    try:
        async with http(runtime) as client:
            token = await app_token(client, "acme")
            auth = ("acme", token)
            made = await client.post(
                "/v1/conferences",
                json={"name": "Small"},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert made.status_code == 201
            small = (await listing(client, auth))["Small"]
            assert small == {
                "conference_name": "Small",
                "max_participants": 40,
                "status": "HOLDING",
            }

            scenario = ["-sf", str(SCENARIOS / "aculab_uac_hold.xml"), "-s", "Small"]
            load = ["-m", "40", "-l", "40", "-r", "40", "-d", "12000"]
            holders = asyncio.create_task(
                run_sipp(runtime.bridge.transports.udp_port, [*scenario, *load], tmp_path, 60)
            )
            port = runtime.bridge.control
            await eventually(lambda: len(port.participants("Small")) == 40, timeout=10)
            assert (await listing(client, auth))["Small"]["status"] == "ACTIVE"
            assert await late.call() == 486  # the 41st is busied
            result = await holders
            assert result.successful == 40 and result.failed == 0, result.stderr[-500:]
    finally:
        await late.hangup()
        await runtime.stop()


async def test_long_reserved_name_can_be_dialled(tmp_path: Path) -> None:
    """A conference name may have up to 47 characters: callers must reach it once started."""
    clock = FakeClock(datetime.now(UTC).replace(second=0, microsecond=0))
    runtime = await start(tmp_path, clock)
    name = "L" * 47
    caller = phone(runtime, name, "alice")
    try:
        async with http(runtime) as client:
            auth = ("acme", await app_token(client, "acme"))
            assert (await reserve(client, auth, clock, name)).status_code == 200
            await to_start(runtime, clock, name, minutes=10)
            assert await caller.call() == 200
    finally:
        await caller.hangup()
        await runtime.stop()


# --- 4. bad input -------------------------------------------------------------------------------


async def test_credentials_are_required(tmp_path: Path) -> None:
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    runtime = await start(tmp_path, clock)
    try:
        async with http(runtime) as client:
            token = await app_token(client, "acme")
            other = await app_token(client, "globex")
            refusals: list[tuple[Auth | None, dict[str, str]]] = [
                (None, {}),
                (("acme", "wrong"), {}),
                (("acme", ""), {}),
                (("globex", token), {}),  # a real token, another application's name
                (("acme", other), {}),
                (None, {"Authorization": f"Bearer {token}"}),
                (None, {"Authorization": "Basic !!notbase64"}),
                (("acme", ADMIN_TOKEN), {}),
            ]
            for auth, headers in refusals:
                reply = await client.get("/aculab/conference_list", auth=auth, headers=headers)
                assert_error(reply, 401, "HTTP 401")
                assert reply.headers["WWW-Authenticate"].startswith("Basic")
            good = await client.get("/aculab/conference_list", auth=("acme", token))
            assert good.status_code == 200 and good.json() == []
    finally:
        await runtime.stop()


async def test_bad_parameters_get_400(tmp_path: Path) -> None:
    clock = FakeClock(datetime(2030, 1, 1, 12, 0, tzinfo=UTC))
    runtime = await start(tmp_path, clock)
    try:
        async with http(runtime) as client:
            auth = ("acme", await app_token(client, "acme"))
            base = {
                "conference_name": "Bad1",
                "max_participants": "40",
                "start_time": "2030-01-01_12:10:00",
                "duration": "15",
            }
            for field in base:
                params = {k: v for k, v in base.items() if k != field}
                reply = await aculab(client, "conference_reservation_create", auth, params)
                assert_error(reply, 400, "0001", field)
            empty = {**base, "conference_name": ""}
            reply = await aculab(client, "conference_reservation_create", auth, empty)
            assert_error(reply, 400, "0001", "conference_name")
            malformed = [
                ("conference_name", "has space"),
                ("max_participants", "many"),
                ("max_participants", "40.5"),
                ("duration", "1e2"),
                ("start_time", "2030-01-01T12:10:00"),
                ("start_time", "2030-01-01 12:10"),
                ("start_time", "2030-02-30_12:10:00"),
                ("start_time", "2030-01-01-25-00"),
                ("start_time", "soon"),
                ("divert", "not a service"),
            ]
            for field, value in malformed:
                params = {**base, field: value}
                reply = await aculab(client, "conference_reservation_create", auth, params)
                assert_error(reply, 400, "0002", field)
            twice = [*base.items(), ("duration", "30")]
            reply = await aculab(client, "conference_reservation_create", auth, twice)
            assert_error(reply, 400, "0003", "duration")
            split = await client.post(
                "/aculab/conference_reservation_create?duration=15",
                data={k: v for k, v in base.items()},
                auth=auth,
            )
            assert_error(split, 400, "0003", "duration")  # once in the query, once in the form
            as_json = await client.post(
                "/aculab/conference_reservation_create", json=base, auth=auth
            )
            assert_error(as_json, 400, "0002", "body")

            token = await token_of(client, auth, clock, "Good1")
            modify = "conference_reservation_modify"
            reply = await aculab(client, modify, auth, {"duration": "15"})
            assert_error(reply, 400, "0001", "reservation_token")
            reply = await aculab(client, modify, auth, {"reservation_token": token})
            assert_error(reply, 400, "0001", "duration")
            reply = await aculab(
                client, modify, auth, {"reservation_token": token, "duration": "x"}
            )
            assert_error(reply, 400, "0002", "duration")
            reply = await aculab(client, "conference_reservation_remove", auth, {})
            assert_error(reply, 400, "0001", "reservation_token")
            for action in ("conference_participant_list", "conference_participant_eject"):
                reply = await aculab(client, action, auth, {"participant_id": "p"})
                assert_error(reply, 400, "0001", "conference_name")
            mismatch = {"conference_name": "Other", "reservation_token": token}
            reply = await aculab(client, "conference_participant_list", auth, mismatch)
            assert_error(reply, 400, "0002", "reservation_token")

            options = "conference_participant_set_options"
            reply = await aculab(
                client, options, auth, {"conference_name": "Good1", "muted": "true"}
            )
            assert_error(reply, 400, "0001", "participant_id")
            reply = await aculab(
                client, options, auth, {"conference_name": "Good1", "participant_id": "p"}
            )
            assert_error(reply, 400, "0001", "muted or dtmf_enabled")
            for field in ("muted", "dtmf_enabled"):
                params = {"conference_name": "Good1", "participant_id": "p", field: "yes"}
                assert_error(await aculab(client, options, auth, params), 400, "0002", field)
            reply = await aculab(
                client, "conference_participant_eject", auth, {"conference_name": "Good1"}
            )
            assert_error(reply, 400, "0001", "participant_id")
            assert (await client.get("/v1/health")).status_code == 200
    finally:
        await runtime.stop()


async def test_unknown_and_wrong_state_get_404_and_409(tmp_path: Path) -> None:
    clock = FakeClock(datetime.now(UTC).replace(second=0, microsecond=0))
    runtime = await start(tmp_path, clock)
    lonely = phone(runtime, "Waiting", "lonely")
    try:
        async with http(runtime) as client:
            auth = ("acme", await app_token(client, "acme"))
            other = ("globex", await app_token(client, "globex"))
            token = await token_of(client, auth, clock, "Waiting")
            mine = {"reservation_token": token}

            # unknown: names, tokens, another application's conference, participants
            for action, params in [
                ("conference_reservation_modify", {"reservation_token": "nope", "duration": 15}),
                ("conference_reservation_remove", {"reservation_token": "nope"}),
                ("conference_participant_list", {"conference_name": "Nowhere"}),
                ("conference_participant_list", {"reservation_token": "nope"}),
                (
                    "conference_participant_eject",
                    {"conference_name": "Nowhere", "participant_id": "p"},
                ),
            ]:
                assert_error(await aculab(client, action, auth, params), 404, "HTTP 404")
            for action, params in [
                ("conference_reservation_modify", {**mine, "duration": 15}),
                ("conference_reservation_remove", mine),
                ("conference_participant_list", {"conference_name": "Waiting"}),
            ]:
                assert_error(await aculab(client, action, other, params), 404, "HTTP 404")
            assert await listing(client, other) == {}
            taken = await reserve(client, other, clock, "Waiting")
            assert_error(taken, 409, "HTTP 409", "already present")
            assert_error(await reserve(client, auth, clock, "Waiting"), 409, "HTTP 409")

            # RESERVED: options and eject refused, participant list empty
            about = {"conference_name": "Waiting", "participant_id": "p"}
            options = "conference_participant_set_options"
            reply = await aculab(client, options, auth, {**about, "muted": "true"})
            assert_error(reply, 409, "HTTP 409", "RESERVED")
            reply = await aculab(client, "conference_participant_eject", auth, about)
            assert_error(reply, 409, "HTTP 409", "RESERVED")

            # HOLDING with one caller: still refused, though the participant exists
            await to_start(runtime, clock, "Waiting", minutes=10)
            assert await lonely.call() == 200
            await asyncio.sleep(0.3)
            assert state_of(runtime, "Waiting") == "HOLDING"
            people = await aculab(client, "conference_participant_list", auth, mine)
            (person,) = people.json()["participants"]
            assert people.json()["status"] == "HOLDING"
            about = {"conference_name": "Waiting", "participant_id": person["participant_id"]}
            reply = await aculab(client, options, auth, {**about, "muted": "true"})
            assert_error(reply, 409, "HTTP 409", "HOLDING")
            reply = await aculab(client, "conference_participant_eject", auth, about)
            assert_error(reply, 409, "HTTP 409", "HOLDING")
            assert not lonely.ended_by_bridge

            # an unreserved room has no reservation token; ACTIVE with an unknown participant
            bearer = {"Authorization": f"Bearer {auth[1]}"}
            made = await client.post("/v1/conferences", json={"name": "Open1"}, headers=bearer)
            unreserved = {"reservation_token": made.json()["id"], "duration": 15}
            reply = await aculab(client, "conference_reservation_modify", auth, unreserved)
            assert_error(reply, 404, "HTTP 404", "reservation_token")
            visitor = phone(runtime, "Open1", "visitor")
            try:
                assert await visitor.call() == 200
                await eventually(lambda: state_of(runtime, "Open1") == "ACTIVE")
                ghost = {"conference_name": "Open1", "participant_id": "ghost", "muted": "true"}
                assert_error(await aculab(client, options, auth, ghost), 404, "HTTP 404", "ghost")
                del ghost["muted"]
                reply = await aculab(client, "conference_participant_eject", auth, ghost)
                assert_error(reply, 404, "HTTP 404", "ghost")
            finally:
                await visitor.hangup()
            assert (await client.get("/v1/health")).status_code == 200
    finally:
        await lonely.hangup()
        await runtime.stop()
