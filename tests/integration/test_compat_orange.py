"""The Orange click-to-conf dialect (control/api/dialects/orange.py) against the real bridge: the
documents' example requests replayed with their XML and JSON answers checked field by field,
the duration limits at both edges, a `room` conference joined by a SIPp caller keying its code
with the Debian RFC 4733 pcaps, a guest called by createCall who presses # (SIPp behind the
trunk), caller lists and addCaller with scripted phones, and every error status in both
formats."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import struct
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge.tools.phone import Phone
from control.runtime import Runtime
from tests.integration.harness import (
    ADMIN_TOKEN,
    LOOPBACK,
    SCENARIOS,
    SippResult,
    free_port,
    loopback_config,
    run_sipp,
    sipp_listening,
    with_control,
)

pytestmark = pytest.mark.integration

CONFERENCE_FIELDS = [
    "id",
    "access_mode",
    "room_code",
    "phone_number",
    "start_date",
    "end_date",
    "duration",
    "state",
    "callers",
]
CALL_FIELDS = ["id", "from", "to", "status", "max_duration"]
PCAPS = Path("/usr/share/sip-tester")
GUEST = "33612345678"  # the documents' number format: country code and digits, no +


# --- running the product ------------------------------------------------------------------------


async def start(tmp_path: Path, **dialout: Any) -> Runtime:
    config = with_control(loopback_config(), tmp_path / "data")
    settings = {"ring_timeout_s": 5, "confirm_timeout_s": 5, **dialout}
    config = dataclasses.replace(config, dialout=dataclasses.replace(config.dialout, **settings))
    return await Runtime(config).start()


def dead_trunk() -> str:
    """A trunk address where nothing answers: calls are accepted, then simply never answered."""
    return f"{LOOPBACK}:{free_port()}"


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    running = await start(tmp_path, trunk=dead_trunk())
    try:
        yield running
    finally:
        await running.stop()


def http(runtime: Runtime) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=runtime.base_url, timeout=15.0, trust_env=False)


async def app_key(client: httpx.AsyncClient, app: str = "acme") -> str:
    """An application's API token: the Orange `id` access key."""
    reply = await client.post(
        f"/v1/admin/applications/{app}/tokens", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert reply.status_code == 201, reply.text
    return str(reply.json()["token"])


async def eventually(condition: Callable[[], Any], timeout: float = 15.0) -> None:
    for _ in range(int(timeout / 0.1)):
        if await condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met in time")


# --- the dialect's answers ----------------------------------------------------------------------


@dataclasses.dataclass
class Answer:
    """One answer, in the format asked for, reduced to what both formats carry."""

    fmt: str
    code: int
    message: str
    payload: dict[str, Any]  # every value a string or None (XML text), lists for callers
    raw: Any = None  # the JSON body as sent, to check its types


def xml_value(element: ET.Element) -> Any:
    if element.tag == "callers":
        assert all(child.tag == "caller" for child in element)
        return [child.text for child in element]
    if len(element):
        return {child.tag: xml_value(child) for child in element}
    return element.text


def json_value(value: Any) -> Any:
    """JSON scalars as XML would carry them: numbers as text, null as an empty element."""
    if isinstance(value, dict):
        return {key: json_value(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [json_value(item) for item in value]
    return None if value is None else str(value)


def parse(reply: httpx.Response, fmt: str) -> Answer:
    """Check the envelope of the documents (response/status/status_code, status_msg)."""
    assert reply.status_code == 200, reply.text  # the outcome is in status_code, never in HTTP
    if fmt == "json":
        assert reply.headers["content-type"].startswith("application/json")
        body = reply.json()
        assert list(body) == ["response"]
        response = body["response"]
        assert list(response["status"]) == ["status_code", "status_msg"]
        code = response["status"]["status_code"]
        assert isinstance(code, int)
        payload = {k: json_value(v) for k, v in response.items() if k != "status"}
        return Answer(fmt, code, response["status"]["status_msg"], payload, body)
    assert reply.headers["content-type"].startswith("application/xml")
    assert reply.text.startswith("<?xml")
    root = ET.fromstring(reply.content)
    assert root.tag == "response" and root[0].tag == "status"
    assert [child.tag for child in root[0]] == ["status_code", "status_msg"]
    payload = {child.tag: xml_value(child) for child in root[1:]}
    return Answer(
        fmt,
        int(root.findtext("status/status_code", "")),
        root.findtext("status/status_msg", ""),
        payload,
    )


async def orange(
    client: httpx.AsyncClient, verb: str, fmt: str = "xml", method: str = "GET", **params: str
) -> Answer:
    url = f"/conf/{verb}.{fmt}"
    if method == "POST":
        reply = await client.post(url, data=params)
    else:
        reply = await client.get(url, params=params)
    return parse(reply, fmt)


async def ok(client: httpx.AsyncClient, verb: str, fmt: str = "xml", **params: str) -> Answer:
    answer = await orange(client, verb, fmt, **params)
    assert (answer.code, answer.message) == (200, "OK"), answer
    return answer


def check_conference(answer: Answer, runtime: Runtime) -> dict[str, Any]:
    """Field by field: the names and order, and what each must look like."""
    assert list(answer.payload) == ["conference"]
    conference = answer.payload["conference"]
    assert list(conference) == CONFERENCE_FIELDS
    assert re.fullmatch(r"[0-9a-f]{6}", conference["id"])  # like the documents' "12a34b"
    port = runtime.bridge.transports.udp_port
    assert conference["phone_number"] == f"sip:{conference['id']}@{LOOPBACK}:{port}"
    start = datetime.fromisoformat(conference["start_date"])
    end = datetime.fromisoformat(conference["end_date"])
    assert end - start == timedelta(minutes=int(conference["duration"]))
    assert isinstance(conference["callers"], list)
    if conference["access_mode"] in ("room", "room+caller"):
        assert re.fullmatch(r"[0-9]{6}", conference["room_code"])
    else:
        assert conference["room_code"] is None
    return dict(conference)


async def native(client: httpx.AsyncClient, key: str, path: str) -> Any:
    reply = await client.get(f"/v1/conferences/{path}", headers={"Authorization": f"Bearer {key}"})
    assert reply.status_code == 200, reply.text
    return reply.json()


# --- 1. the documents' example requests ---------------------------------------------------------


@pytest.mark.parametrize("fmt", ["xml", "json"])
async def test_create_conference_as_in_the_example(runtime: Runtime, fmt: str) -> None:
    """Seed 003's PHP: createConference with access_mode=none and duration=20, then read
    conference/id."""
    async with http(runtime) as client:
        key = await app_key(client)
        answer = await ok(
            client, "createConference", fmt, id=key, access_mode="none", duration="20"
        )
        conference = check_conference(answer, runtime)
        assert conference["access_mode"] == "none" and conference["duration"] == "20"
        assert conference["state"] == "HOLDING" and conference["callers"] == []
        started = datetime.fromisoformat(conference["start_date"])
        assert abs(started - datetime.now(UTC)) < timedelta(minutes=1)
        mirrored = await native(client, key, conference["id"])
        assert mirrored["access"] == "none" and mirrored["locked"] is True  # no dial-in
        assert mirrored["duration_minutes"] == 20
        if fmt == "json":  # numbers stay numbers, absent values are null, lists are lists
            raw = answer.raw["response"]["conference"]
            assert (raw["duration"], raw["room_code"], raw["callers"]) == (20, None, [])


async def test_the_example_as_literally_written_and_by_post(runtime: Runtime) -> None:
    """The PHP sends `&none=none` (its `$access_mode` in the name): none is the default. The
    documents allow GET and POST alike."""
    async with http(runtime) as client:
        key = await app_key(client)
        literal = await ok(client, "createConference", id=key, none="none", duration="20")
        assert check_conference(literal, runtime)["access_mode"] == "none"
        posted = await orange(
            client, "createConference", "json", "POST", id=key, access_mode="room", duration="30"
        )
        assert (posted.code, posted.message) == (200, "OK")
        conference = check_conference(posted, runtime)
        assert conference["access_mode"] == "room" and conference["duration"] == "30"
        mixed = await client.post(
            f"/conf/createConference.xml?id={key}", data={"access_mode": "caller", "callers": "1"}
        )
        assert parse(mixed, "xml").payload["conference"]["callers"] == ["1"]


async def test_xml_and_json_carry_the_same_fields(runtime: Runtime) -> None:
    async with http(runtime) as client:
        key = await app_key(client)
        params = {"id": key, "access_mode": "room+caller", "callers": f"{GUEST}, 33698765432"}
        as_xml = check_conference(await ok(client, "createConference", "xml", **params), runtime)
        as_json = check_conference(await ok(client, "createConference", "json", **params), runtime)
        for conference in (as_xml, as_json):
            assert conference["access_mode"] == "room+caller"
            assert conference["callers"] == [GUEST, "33698765432"]
        different = {"id", "room_code", "phone_number", "start_date", "end_date"}
        assert {k: v for k, v in as_xml.items() if k not in different} == {
            k: v for k, v in as_json.items() if k not in different
        }


@pytest.mark.parametrize(
    ("access_mode", "expected"),
    [
        ("room", "room"),
        ("caller", "caller"),
        ("room+caller", "room+caller"),
        ("room caller", "room+caller"),
        ("none", "none"),
        ("ROOM", "room"),
    ],
)
async def test_every_access_mode(runtime: Runtime, access_mode: str, expected: str) -> None:
    """`room caller`: what a browser makes of an unencoded `room+caller`."""
    async with http(runtime) as client:
        key = await app_key(client)
        answer = await ok(
            client, "createConference", id=key, access_mode=access_mode, callers=GUEST
        )
        conference = check_conference(answer, runtime)
        assert conference["access_mode"] == expected
        mirrored = await native(client, key, conference["id"])
        assert mirrored["access"] == expected and mirrored["code"] == conference["room_code"]
        assert mirrored["locked"] is (expected == "none")


@pytest.mark.parametrize(("duration", "minutes"), [("1", 1), ("120", 120), (None, 120)])
async def test_duration_edges_and_default(
    runtime: Runtime, duration: str | None, minutes: int
) -> None:
    """The documents' two-hour maximum: 1 and 120 minutes are accepted, absent means 120 (0
    and 121 are refused: see the bad-input table)."""
    async with http(runtime) as client:
        key = await app_key(client)
        params = {"id": key} if duration is None else {"id": key, "duration": duration}
        for fmt in ("xml", "json"):
            conference = check_conference(
                await ok(client, "createConference", fmt, **params), runtime
            )
            assert conference["duration"] == str(minutes)
            assert (await native(client, key, conference["id"]))["duration_minutes"] == minutes


async def test_start_date_reserves_and_calls_wait_for_it(runtime: Runtime) -> None:
    start = (datetime.now(UTC) + timedelta(hours=3)).replace(microsecond=0)
    async with http(runtime) as client:
        key = await app_key(client)
        paris = timezone(timedelta(hours=2))
        for given in (
            start.isoformat(),
            start.astimezone(paris).isoformat(),
            start.replace(tzinfo=None).isoformat(),  # no offset: UTC
            start.replace(tzinfo=None).isoformat(sep=" "),
        ):
            answer = await ok(
                client, "createConference", "json", id=key, start_date=given, duration="45"
            )
            conference = check_conference(answer, runtime)
            assert datetime.fromisoformat(conference["start_date"]) == start
            assert datetime.fromisoformat(conference["end_date"]) == start + timedelta(minutes=45)
            assert conference["state"] == "RESERVED"
        early = await orange(client, "createCall", id=key, to=conference["id"], **{"from": GUEST})
        assert early.code == 409 and early.message.startswith("to:"), early


@pytest.mark.parametrize("fmt", ["xml", "json"])
async def test_add_caller_before_the_conference(runtime: Runtime, fmt: str) -> None:
    start = (datetime.now(UTC) + timedelta(minutes=30)).isoformat()
    async with http(runtime) as client:
        key = await app_key(client)
        created = await ok(
            client,
            "createConference",
            fmt,
            id=key,
            access_mode="caller",
            callers=GUEST,
            start_date=start,
        )
        conference_id = created.payload["conference"]["id"]
        for number, to in (
            ("33698765432", conference_id),
            ("33698765432", conference_id),
            ("33611111111", f"conf:{conference_id}"),
        ):
            added = await ok(client, "addCaller", fmt, id=key, conference_id=to, caller=number)
            assert added.payload["conference"]["id"] == conference_id
            check_conference(added, runtime)
        callers = added.payload["conference"]["callers"]
        assert sorted(callers) == sorted([GUEST, "33698765432", "33611111111"])  # no duplicate
        assert sorted(await native(client, key, f"{conference_id}/callers")) == sorted(callers)


@pytest.mark.parametrize("fmt", ["xml", "json"])
async def test_create_call_as_in_the_example(runtime: Runtime, fmt: str) -> None:
    """Seed 003: createCall with `from` (the guest, each of $call_numbers) and `to` (the
    conference); the guest is dialled through the trunk as an E.164 number."""
    async with http(runtime) as client:
        key = await app_key(client)
        created = await ok(client, "createConference", id=key, duration="20")
        conference_id = created.payload["conference"]["id"]
        answer = await ok(client, "createCall", fmt, id=key, to=conference_id, **{"from": GUEST})
        assert list(answer.payload) == ["call"]
        call = answer.payload["call"]
        assert list(call) == CALL_FIELDS
        assert re.fullmatch(r"[0-9a-f]{16}", call["id"])
        assert (call["from"], call["to"], call["status"]) == (f"+{GUEST}", conference_id, "queued")
        assert 19 * 60 < int(call["max_duration"]) <= 20 * 60  # the conference ends first
        if fmt == "json":
            assert isinstance(answer.raw["response"]["call"]["max_duration"], int)
        listed = await native(client, key, f"{conference_id}/calls")
        assert [(c["txn_ref"], c["dest"], c["confirm"]) for c in listed] == [
            (call["id"], f"+{GUEST}", True)
        ]


async def test_create_call_is_capped_at_two_hours(runtime: Runtime) -> None:
    async with http(runtime) as client:
        key = await app_key(client)
        created = await ok(client, "createConference", id=key, duration="120")
        conference_id = created.payload["conference"]["id"]
        second = await ok(
            client,
            "createCall",
            "json",
            id=key,
            to=f"conf:{conference_id}",
            **{"from": f"+{GUEST}"},
        )
        assert 7100 < int(second.payload["call"]["max_duration"]) <= 7200
        assert runtime.config.dialout.max_call_s == 7200


# --- 2. end to end --------------------------------------------------------------------------------


def renumbered_pcap(key: str, index: int, workdir: Path) -> Path:
    """A copy of the Debian pcap for `key` whose RTP timestamps and sequence numbers follow the
    keys before it. The Debian files come from one session in the order 1 0 2 .. 9 * #, so
    played in another order a later key carries an older timestamp on the same SSRC, which
    RFC 4733 receivers (ours included) drop as a late copy of an old event. The events
    themselves (code, durations, end bits, pacing) are left untouched."""
    data = bytearray((PCAPS / f"dtmf_2833_{key}.pcap").read_bytes())
    assert struct.unpack_from("<I", data, 20)[0] == 1  # Ethernet frames
    offset, packet = 24, 0
    while offset < len(data):
        length = struct.unpack_from("<I", data, offset + 8)[0]
        ip = offset + 16 + 14
        udp = ip + (data[ip] & 0x0F) * 4
        struct.pack_into("!H", data, udp + 6, 0)  # no UDP checksum (IPv4): the header changes
        struct.pack_into("!HI", data, udp + 8 + 2, 1000 + 20 * index + packet, 8000 * (index + 1))
        offset, packet = offset + 16 + length, packet + 1
    copy = workdir / f"key{index}_{key}.pcap"
    copy.write_bytes(bytes(data))
    return copy


def code_scenario(workdir: Path, code: str) -> Path:
    """orange_enter_code.xml with the room code and # as RFC 4733 pcaps, one key at a time."""
    workdir.mkdir(exist_ok=True)
    keys = [*code, "pound"]
    steps = "\n".join(
        f'  <nop><action><exec play_pcap_audio="{renumbered_pcap(key, i, workdir)}"/>'
        '</action></nop>\n  <pause milliseconds="400"/>'
        for i, key in enumerate(keys)
    )
    template = (SCENARIOS / "orange_enter_code.xml").read_text()
    assert "<!-- ORANGE_DIGITS -->" in template
    scenario = workdir / f"orange_enter_code_{code}.xml"
    scenario.write_text(template.replace("<!-- ORANGE_DIGITS -->", steps))
    return scenario


def sipp_task(
    tmp_path: Path, name: str, args: list[str], bridge_port: int | None, port: int | None = None
) -> asyncio.Task[SippResult]:
    workdir = tmp_path / name
    workdir.mkdir()
    return asyncio.create_task(run_sipp(bridge_port, args, workdir, timeout=60, port=port))


async def test_room_code_by_rfc4733_and_a_guest_who_presses_pound(tmp_path: Path) -> None:
    trunk_port = free_port()
    guest = sipp_task(
        tmp_path,
        "guest",
        ["-sf", str(SCENARIOS / "uas_answer_pound.xml"), "-m", "1"],
        None,
        trunk_port,
    )
    await sipp_listening(trunk_port)
    running = await start(tmp_path, trunk=f"{LOOPBACK}:{trunk_port}")
    caller: asyncio.Task[SippResult] | None = None
    try:
        async with http(running) as client:
            key = await app_key(client)
            created = await ok(client, "createConference", id=key, access_mode="room")
            conference = check_conference(created, running)
            conference_id, code = conference["id"], conference["room_code"]
            headers = {"Authorization": f"Bearer {key}"}

            async def callers_in() -> list[str]:
                reply = await client.get(
                    f"/v1/conferences/{conference_id}/participants", headers=headers
                )
                return sorted(p["caller"] for p in reply.json())

            args = [
                "-sf",
                str(code_scenario(tmp_path / "keys", code)),
                "-s",
                conference_id,
                "-m",
                "1",
            ]
            caller = sipp_task(tmp_path, "caller", args, running.bridge.transports.udp_port)
            await eventually(lambda: _equals(callers_in, ["sipp"]), timeout=20)

            called = await ok(client, "createCall", id=key, to=conference_id, **{"from": GUEST})
            ref = called.payload["call"]["id"]
            await eventually(lambda: _equals(callers_in, sorted(["sipp", f"+{GUEST}"])))
            outcome = (await client.get(f"/v1/dialouts/{ref}", headers=headers)).json()
            assert outcome["status"] == "answered" and outcome["confirm"] is True

            ended = await client.delete(f"/v1/conferences/{conference_id}", headers=headers)
            assert ended.status_code == 204
            for task in (caller, guest):  # each sees the bridge's BYE
                result = await asyncio.wait_for(task, 30)
                assert result.successful == 1, result.stderr[-800:]
    finally:
        for task in (caller, guest):
            if task is not None and not task.done():
                task.cancel()
        await running.stop()


async def _equals(read: Callable[[], Any], expected: list[str]) -> bool:
    return bool(await read() == expected)


async def test_a_guest_who_never_presses_pound_stays_out(tmp_path: Path) -> None:
    trunk_port = free_port()
    guest = sipp_task(
        tmp_path, "silent", ["-sf", str(SCENARIOS / "uas_answer.xml"), "-m", "1"], None, trunk_port
    )
    await sipp_listening(trunk_port)
    running = await start(tmp_path, trunk=f"{LOOPBACK}:{trunk_port}", confirm_timeout_s=2)
    try:
        async with http(running) as client:
            key = await app_key(client)
            created = await ok(client, "createConference", id=key)
            conference_id = created.payload["conference"]["id"]
            called = await ok(client, "createCall", id=key, to=conference_id, **{"from": GUEST})
            headers = {"Authorization": f"Bearer {key}"}

            async def settled() -> bool:
                reply = await client.get(
                    f"/v1/dialouts/{called.payload['call']['id']}", headers=headers
                )
                return reply.json()["status"] not in ("dialling", "ringing")

            await eventually(settled, timeout=20)
            outcome = await client.get(
                f"/v1/dialouts/{called.payload['call']['id']}", headers=headers
            )
            assert outcome.json()["status"] == "unanswered"  # no #: hung up, never joined
            assert await native(client, key, f"{conference_id}/participants") == []
            result = await asyncio.wait_for(guest, 30)
            assert result.successful == 1, result.stderr[-800:]
    finally:
        if not guest.done():
            guest.cancel()
        await running.stop()


def phone(runtime: Runtime, room: str, user: str) -> Phone:
    return Phone(LOOPBACK, runtime.bridge.transports.udp_port, room, tone_hz=440.0, user=user)


async def test_caller_mode_and_add_caller_during_the_conference(runtime: Runtime) -> None:
    async with http(runtime) as client:
        key = await app_key(client)
        created = await ok(
            client, "createConference", id=key, access_mode="caller", callers="33611111111"
        )
        conference_id = created.payload["conference"]["id"]
        listed = phone(runtime, conference_id, "33611111111")
        early = phone(runtime, conference_id, "33622222222")  # before addCaller: refused
        late = phone(runtime, conference_id, "33622222222")  # the same number after it
        try:
            assert await listed.call() == 200
            assert await early.call() == 200  # answered to hear the refusal, then hung up

            async def refused() -> bool:
                return early.ended_by_bridge

            await eventually(refused)
            await ok(client, "addCaller", id=key, conference_id=conference_id, caller="33622222222")
            assert await late.call() == 200
            await asyncio.sleep(1.0)
            assert not late.ended_by_bridge
            people = await native(client, key, f"{conference_id}/participants")
            assert sorted(p["caller"] for p in people) == ["33611111111", "33622222222"]
        finally:
            for one in (listed, early, late):
                await one.hangup()


async def test_mode_none_takes_no_incoming_calls(runtime: Runtime) -> None:
    async with http(runtime) as client:
        key = await app_key(client)
        created = await ok(client, "createConference", id=key, access_mode="none")
        caller = phone(runtime, created.payload["conference"]["id"], "33644444444")
        try:
            assert await caller.call() == 403
        finally:
            await caller.hangup()


# --- 3. bad input -------------------------------------------------------------------------------


@dataclasses.dataclass
class World:
    """What the bad requests refer to: keys and conferences in every state."""

    key: str
    other_key: str
    open: str
    reserved: str
    ended: str
    foreign: str

    def fill(self, params: dict[str, str]) -> dict[str, str]:
        names = dataclasses.asdict(self)
        return {k: v.format(**names) for k, v in params.items()}


@pytest.fixture
async def world(runtime: Runtime) -> World:
    async with http(runtime) as client:
        key, other_key = await app_key(client), await app_key(client, "globex")

        async def conference(owner: str, **params: str) -> str:
            answer = await ok(client, "createConference", id=owner, **params)
            return str(answer.payload["conference"]["id"])

        later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        ended = await conference(key)
        reply = await client.delete(
            f"/v1/conferences/{ended}", headers={"Authorization": f"Bearer {key}"}
        )
        assert reply.status_code == 204
        return World(
            key,
            other_key,
            await conference(key),
            await conference(key, start_date=later),
            ended,
            await conference(other_key),
        )


BAD = [
    # (verb, params, status_code, status_msg starts with)
    ("createConference", {}, 401, "id: missing"),
    ("createConference", {"id": ""}, 401, "id: missing"),
    ("createConference", {"id": "a1234b56789"}, 401, "id: invalid"),
    ("createConference", {"id": ADMIN_TOKEN}, 401, "id: invalid"),
    ("createConference", {"id": "{key}", "access_mode": "everyone"}, 400, "access_mode:"),
    ("createConference", {"id": "{key}", "duration": "0"}, 400, "duration:"),
    ("createConference", {"id": "{key}", "duration": "121"}, 400, "duration:"),
    ("createConference", {"id": "{key}", "duration": "-5"}, 400, "duration:"),
    ("createConference", {"id": "{key}", "duration": "1.5"}, 400, "duration:"),
    ("createConference", {"id": "{key}", "duration": "twenty"}, 400, "duration:"),
    ("createConference", {"id": "{key}", "start_date": "tomorrow"}, 400, "start_date:"),
    (
        "createConference",
        {"id": "{key}", "start_date": "2010-06-16T14:30:00+02:00"},
        400,
        "start_date: is in the past",
    ),
    ("createConference", {"id": "{key}", "access_mode": "caller"}, 400, "callers:"),
    (
        "createConference",
        {"id": "{key}", "access_mode": "caller", "callers": " , "},
        400,
        "callers:",
    ),
    ("createConference", {"id": "{key}", "callers": "bad number!"}, 400, "callers:"),
    ("addCaller", {"id": "nope", "conference_id": "{open}", "caller": GUEST}, 401, "id:"),
    ("addCaller", {"id": "{key}", "caller": GUEST}, 400, "conference_id: missing"),
    ("addCaller", {"id": "{key}", "conference_id": "{open}"}, 400, "caller: missing"),
    ("addCaller", {"id": "{key}", "conference_id": "{open}", "caller": "a b"}, 400, "caller:"),
    (
        "addCaller",
        {"id": "{key}", "conference_id": "ffffff0", "caller": GUEST},
        404,
        "conference_id: unknown",
    ),
    (
        "addCaller",
        {"id": "{key}", "conference_id": "{foreign}", "caller": GUEST},
        404,
        "conference_id: unknown",
    ),
    (
        "addCaller",
        {"id": "{key}", "conference_id": "{ended}", "caller": GUEST},
        409,
        "conference_id:",
    ),
    ("createCall", {"to": "{open}", "from": GUEST}, 401, "id: missing"),
    ("createCall", {"id": "{key}", "to": "{open}"}, 400, "from: missing"),
    ("createCall", {"id": "{key}", "from": GUEST}, 400, "to: missing"),
    ("createCall", {"id": "{key}", "to": "{open}", "from": "0612345678"}, 400, "from:"),
    ("createCall", {"id": "{key}", "to": "{open}", "from": "+1234567890123456"}, 400, "from:"),
    ("createCall", {"id": "{key}", "to": "{open}", "from": "mailto:a@b.c"}, 400, "from:"),
    (
        "createCall",
        {"id": "{key}", "to": "{open}", "from": "sip:x@no-such-host.invalid"},
        400,
        "from:",
    ),
    ("createCall", {"id": "{key}", "to": "ffffff0", "from": GUEST}, 404, "to: unknown"),
    ("createCall", {"id": "{key}", "to": "conf:{foreign}", "from": GUEST}, 404, "to: unknown"),
    ("createCall", {"id": "{key}", "to": "{ended}", "from": GUEST}, 409, "to:"),
    ("createCall", {"id": "{key}", "to": "{reserved}", "from": GUEST}, 409, "to:"),
    ("deleteConference", {"id": "{key}", "conference_id": "{open}"}, 404, "unknown method"),
]


@pytest.mark.parametrize(("verb", "params", "code", "message"), BAD)
async def test_bad_requests_in_xml_and_json(
    runtime: Runtime, world: World, verb: str, params: dict[str, str], code: int, message: str
) -> None:
    async with http(runtime) as client:
        for fmt in ("xml", "json"):
            answer = await orange(client, verb, fmt, **world.fill(params))
            assert (answer.code, answer.payload) == (code, {}), answer
            assert answer.message.startswith(message), answer
        assert (await client.get("/v1/health")).status_code == 200  # still serving


async def test_unknown_format_and_bad_body(runtime: Runtime, world: World) -> None:
    async with http(runtime) as client:
        reply = await client.get(f"/conf/createConference.html?id={world.key}")
        answer = parse(reply, "xml")
        assert answer.code == 404 and answer.message.startswith("unknown method")
        reply = await client.get(f"/conf/createConference?id={world.key}")
        assert parse(reply, "xml").code == 404
        for fmt in ("xml", "json"):
            reply = await client.post(
                f"/conf/createConference.{fmt}", json={"id": world.key, "duration": 20}
            )
            answer = parse(reply, fmt)
            assert answer.code == 400 and answer.message.startswith("body:"), answer


async def test_no_trunk_and_too_many_calls(tmp_path: Path) -> None:
    """Numbers need a trunk (400); calls beyond dialout.max_concurrent get 429."""
    bare = await start(tmp_path)
    try:
        async with http(bare) as client:
            key = await app_key(client)
            conference_id = (await ok(client, "createConference", id=key)).payload["conference"]
            for fmt in ("xml", "json"):
                answer = await orange(
                    client, "createCall", fmt, id=key, to=conference_id["id"], **{"from": GUEST}
                )
                assert answer.code == 400 and "no trunk" in answer.message, answer
    finally:
        await bare.stop()
    limited = await start(tmp_path / "limited", trunk=dead_trunk(), max_concurrent=1)
    try:
        async with http(limited) as client:
            key = await app_key(client)
            conference_id = (await ok(client, "createConference", id=key)).payload["conference"]
            params = {"id": key, "to": conference_id["id"], "from": GUEST}
            await ok(client, "createCall", **params)
            for fmt in ("xml", "json"):
                answer = await orange(client, "createCall", fmt, **params)
                assert answer.code == 429 and "at most 1" in answer.message, answer
    finally:
        await limited.stop()
