"""Issue 6, the Hoiio dialect (seed 001): `conference/call` against the real bridge, with one
SIPp UAS acting as the trunk that answers every number and stays until the bridge hangs up.

1. the document's example request replayed, field by field, and the limits at both edges
   (tag 256/257, 8/9 destinations, room id 32/33, 8/9 participants in a room);
2. three numbers end to end: one room, three form-encoded notifications to notify_url;
3. every `error_*` status that can arise here, each from a request that provokes it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from bridge.config import ApplicationDefinition
from bridge.tools.phone import Phone
from control.api.dialects.hoiio import RATE_BURST, RATE_PER_S
from control.runtime import Runtime
from tests.integration.harness import (
    ADMIN_TOKEN,
    LOOPBACK,
    SCENARIOS,
    FakeClock,
    SippResult,
    eventually,
    free_port,
    loopback_config,
    run_sipp,
    sipp_listening,
    with_control,
)
from tests.receiver import Receiver

pytestmark = pytest.mark.integration

URL = "/open/conference/call"
ROOM_ID = re.compile(r"^[A-Za-z0-9._]{1,32}$")
GMT8 = timezone(timedelta(hours=8))
EXAMPLE_DESTS = ["+6511111111", "+6522222222", "+6533333333"]  # the document's own example



@dataclasses.dataclass
class Trunk:
    """The SIP trunk numbers are routed to: one SIPp UAS answering `calls` calls, each staying
    up until the bridge sends BYE. Its port is reserved before the bridge starts."""

    tmp_path: Path
    port: int = dataclasses.field(default_factory=free_port)
    task: asyncio.Task[SippResult] | None = None

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    async def answer(self, calls: int) -> None:
        workdir = self.tmp_path / f"trunk-{self.port}"
        workdir.mkdir()
        args = ["-sf", str(SCENARIOS / "uas_answer.xml"), "-m", str(calls), "-trace_msg"]
        self.workdir = workdir
        self.task = asyncio.create_task(run_sipp(None, args, workdir, timeout=60, port=self.port))
        await sipp_listening(self.port)

    async def result(self, timeout: float = 40.0) -> SippResult:
        assert self.task is not None
        return await asyncio.wait_for(self.task, timeout)

    def messages(self) -> str:
        return "".join(p.read_text() for p in self.workdir.glob("*_messages.log"))


OWNED = "+6560000000"  # acme's number (its [[application]] caller_ids)


async def start(
    tmp_path: Path,
    trunk: Trunk | None,
    clock: FakeClock | None = None,
    rooms: dict[str, Any] | None = None,
    **dialout: Any,
) -> Runtime:
    config = with_control(loopback_config(rooms=rooms), tmp_path / "data")
    settings = {"trunk": trunk.address if trunk else "", "ring_timeout_s": 10, **dialout}
    config = dataclasses.replace(config, dialout=dataclasses.replace(config.dialout, **settings))
    acme = ApplicationDefinition("acme", token="acme-config-token-0123", caller_ids=(OWNED,))
    config = dataclasses.replace(config, application=(acme,))  # the caller id it may show
    return await Runtime(config, clock).start()


def http(runtime: Runtime) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=runtime.base_url, timeout=15.0, trust_env=False)


class App:
    """One application as a Hoiio client sees it: app_id and access_token."""

    def __init__(self, client: httpx.AsyncClient, app_id: str, token: str) -> None:
        self.client, self.app_id, self.token = client, app_id, token

    @classmethod
    async def create(cls, client: httpx.AsyncClient, name: str = "acme") -> App:
        reply = await client.post(
            f"/v1/admin/applications/{name}/tokens",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        assert reply.status_code in (200, 201), reply.text
        return cls(client, name, reply.json()["token"])

    @property
    def auth(self) -> dict[str, str]:
        return {"app_id": self.app_id, "access_token": self.token}

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def call(self, method: str = "POST", **params: str) -> dict[str, Any]:
        """conference/call; params go in the form body (POST) or the query (GET)."""
        fields = {**self.auth, **params}
        if method == "POST":
            reply = await self.client.post(URL, data=fields)
        else:
            reply = await self.client.request(method, URL, params=fields)
        assert reply.status_code == 200, reply.text
        assert reply.headers["content-type"].startswith("application/json")
        return dict(reply.json())

    async def status(self, **params: str) -> str:
        body = await self.call(**params)
        if body["status"] != "success_ok":
            assert body == {"status": body["status"]}  # an error carries nothing else
        return str(body["status"])

    async def end(self, room: str) -> None:
        """End the room through the native API: the bridge hangs everyone up."""
        reply = await self.client.delete(f"/v1/conferences/{room}", headers=self.bearer)
        assert reply.status_code == 204, reply.text


class FormReceiver(Receiver):
    """notify_url: records each POST as (content type, form fields), as the document's
    notification parameters arrive (form-encoded, like the requests)."""

    def __init__(self) -> None:
        super().__init__()
        self.posts: list[tuple[str, dict[str, str]]] = []
        self.raw: list[bytes] = []

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in head[1:] if ": " in line)
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        kind = headers.get("content-type", "").split(";")[0].strip()
        fields = dict(parse_qsl(body.decode(), keep_blank_values=True))
        self.posts.append((kind, fields if kind == "application/x-www-form-urlencoded" else {}))
        self.raw.append(body)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()




def callers(runtime: Runtime, room: str) -> list[str]:
    assert runtime.plane is not None
    return sorted(p.caller for p in runtime.bridge.control.participants(room))


def numbers(count: int, base: int = 6590000000) -> list[str]:
    return [f"+{base + i}" for i in range(count)]


# --- 1. the document's example, and the limits at both edges -----------------------------------


async def test_document_example_replayed(tmp_path: Path) -> None:
    trunk = Trunk(tmp_path)
    runtime = await start(tmp_path, trunk)
    await trunk.answer(3)
    try:
        async with http(runtime) as client:
            app = await App.create(client)
            body = await app.call(dest=",".join(EXAMPLE_DESTS), room="R123")
            assert set(body) == {"txn_refs", "room", "status"}, body
            assert body["status"] == "success_ok"
            assert body["room"] == "R123"
            refs = body["txn_refs"]
            assert isinstance(refs, list) and len(refs) == 3 and len(set(refs)) == 3
            assert runtime.plane is not None
            records = [runtime.plane.dialouts.records[ref] for ref in refs]
            assert [r.dest for r in records] == EXAMPLE_DESTS  # same order as dest
            assert {r.room for r in records} == {"R123"}
            await eventually(lambda: callers(runtime, "R123") == sorted(EXAMPLE_DESTS))
            started = [r.started_at for r in records]
            assert started == sorted(started)  # dialled one after another, in order
            room = (await client.get("/v1/conferences/R123", headers=app.bearer)).json()
            assert room["max_participants"] == 8 and room["access"] == "none"
            await app.end("R123")
            result = await trunk.result()
            assert result.successful == 3, result.stderr[-800:]
            for dest in EXAMPLE_DESTS:
                assert f"INVITE sip:{dest}@{LOOPBACK}" in trunk.messages()
    finally:
        await runtime.stop()


async def test_limits_at_both_edges(tmp_path: Path) -> None:
    trunk = Trunk(tmp_path)
    runtime = await start(tmp_path, trunk)
    await trunk.answer(8)
    room32 = "r" * 31 + "."
    phone: Phone | None = None
    try:
        async with http(runtime) as client:
            app = await App.create(client)
            one = numbers(1)[0]
            assert await app.status(dest=one, tag="t" * 257) == "error_tag_invalid_length"
            assert await app.status(dest=one, room="r" * 33) == "error_invalid_room"
            assert await app.status(dest=",".join(numbers(9))) == "error_dest_invalid"
            assert runtime.plane is not None
            assert runtime.plane.dialouts.records == {}  # refused requests dial nobody
            body = await app.call(dest=",".join(numbers(8)), room=room32, tag="t" * 256)
            assert body["status"] == "success_ok" and body["room"] == room32
            assert len(body["txn_refs"]) == 8
            records = [runtime.plane.dialouts.records[ref] for ref in body["txn_refs"]]
            assert {r.tag for r in records} == {"t" * 256}
            await eventually(lambda: callers(runtime, room32) == sorted(numbers(8)))
            ninth = numbers(1, base=6599999999)[0]
            assert await app.status(dest=ninth, room=room32) == "error_invalid_room"  # room full
            phone = Phone(LOOPBACK, runtime.bridge.transports.udp_port, room32, user="dialin")
            assert await phone.call() == 486  # the bridge keeps dial-in callers out too
            assert len(callers(runtime, room32)) == 8
            await app.end(room32)
            result = await trunk.result()
            assert result.successful == 8, result.stderr[-800:]
    finally:
        if phone is not None:
            await phone.close()
        await runtime.stop()


# --- 2. end to end: three numbers, one room, three notifications -------------------------------


async def test_three_destinations_end_to_end_with_notifications(tmp_path: Path) -> None:
    """Expects the document's notification format (form fields); see the module docstring of
    control/api/dialects/hoiio.py for the mapping from the outbox's call.notification."""
    trunk = Trunk(tmp_path)
    runtime = await start(tmp_path, trunk)
    await trunk.answer(3)
    receiver = FormReceiver()
    await receiver.start()
    try:
        async with http(runtime) as client:
            app = await App.create(client)
            body = await app.call(
                "GET",
                dest=",".join(EXAMPLE_DESTS),
                caller_id=OWNED,
                tag="order-42",
                notify_url=receiver.url(),
            )
            assert body["status"] == "success_ok", body
            room, refs = body["room"], body["txn_refs"]
            assert ROOM_ID.match(room)  # generated
            await eventually(lambda: callers(runtime, room) == sorted(EXAMPLE_DESTS))
            assert "From: <sip:+6560000000@" in trunk.messages()  # the caller id they see
            await app.end(room)
            assert (await trunk.result()).successful == 3
            await eventually(lambda: len(receiver.posts) >= 3, timeout=30)
            await asyncio.sleep(0.5)  # nothing more than one per call
            assert len(receiver.posts) == 3, receiver.raw
            assert runtime.plane is not None
            for kind, fields in receiver.posts:
                assert kind == "application/x-www-form-urlencoded", receiver.raw
                check_notification(fields, runtime, refs)
            assert sorted(f["txn_ref"] for _, f in receiver.posts) == sorted(refs)
    finally:
        await receiver.close()
        await runtime.stop()


def check_notification(fields: dict[str, str], runtime: Runtime, refs: list[str]) -> None:
    assert runtime.plane is not None
    record = runtime.plane.dialouts.records[fields["txn_ref"]]
    assert fields["txn_ref"] in refs
    assert fields["dest"] == record.dest
    assert fields["call_status_dest"] == "answered"
    assert fields["call_state"] == "ended"
    assert fields["tag"] == "order-42"
    assert fields["duration"] == "1"  # minutes, rounded up
    assert fields["currency"] == runtime.config.dialout.currency
    assert fields["rate"] == "0.00" and fields["debit"] == "0.00"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", fields["date"])
    date = datetime.strptime(fields["date"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=GMT8)
    assert abs(date.timestamp() - record.started_at) < 2  # GMT+8, the call's start


# --- 3. bad input: every error_* that can arise ------------------------------------------------


async def test_concurrent_call_limit_per_application(tmp_path: Path) -> None:
    trunk = Trunk(tmp_path)
    runtime = await start(tmp_path, trunk, max_concurrent=8)
    await trunk.answer(10)
    try:
        async with http(runtime) as client:
            app = await App.create(client)
            other = await App.create(client, "globex")
            assert await app.status(dest=",".join(numbers(4)), room="alpha") == "success_ok"
            assert await app.status(dest=",".join(numbers(4, 6580000000)), room="beta") == (
                "success_ok"
            )
            await eventually(lambda: len(callers(runtime, "alpha") + callers(runtime, "beta")) == 8)
            late = numbers(1, 6570000000)[0]
            status = await app.status(dest=late, room="gamma")
            assert status == "error_concurrent_call_limit_reached"
            missing = await client.get("/v1/conferences/gamma", headers=app.bearer)
            assert missing.status_code == 404  # nothing created for a refused request
            assert await other.status(dest=late, room="delta") == "success_ok"  # per application
            await app.end("alpha")
            plane = runtime.plane
            assert plane is not None
            tenant = await plane.store.tenants.get_tenant("acme")
            assert tenant is not None
            await eventually(lambda: plane.dialouts.active_count(tenant.id) == 4)
            assert await app.status(dest=late, room="gamma") == "success_ok"  # room again
            await eventually(lambda: callers(runtime, "gamma") == [late])
            for room in ("beta", "gamma"):
                await app.end(room)
            await other.end("delta")
            result = await trunk.result()
            assert result.successful == 10, result.stderr[-800:]
    finally:
        await runtime.stop()


async def test_rate_limit_per_application(tmp_path: Path) -> None:
    clock = FakeClock()
    runtime = await start(tmp_path, None, clock)
    try:
        async with http(runtime) as client:
            app = await App.create(client)
            other = await App.create(client, "globex")
            for _ in range(RATE_BURST):
                assert await app.status(dest="bad") == "error_dest_invalid"
            assert await app.status(dest="bad") == "error_rate_limit_exceeded"
            assert await app.status(dest="+6511111111") == "error_rate_limit_exceeded"
            assert await other.status(dest="bad") == "error_dest_invalid"
            clock.advance(seconds=1 / RATE_PER_S)
            assert await app.status(dest="bad") == "error_dest_invalid"
            assert await app.status(dest="bad") == "error_rate_limit_exceeded"
    finally:
        await runtime.stop()


@dataclasses.dataclass(frozen=True)
class Bad:
    """One bad request: parameters over a valid base (None removes one), and how it is sent."""

    status: str
    params: dict[str, str | None] = dataclasses.field(default_factory=dict)
    method: str = "POST"
    body: bytes | None = None
    content_type: str = "application/x-www-form-urlencoded"
    path: str = URL
    trunk: bool = True


BAD = {
    "put": Bad("error_invalid_http_method", method="PUT"),
    "delete": Bad("error_invalid_http_method", method="DELETE"),
    "patch": Bad("error_invalid_http_method", method="PATCH"),
    "trace": Bad("error_invalid_http_method", method="TRACE"),
    "sdk-path-put": Bad("error_invalid_http_method", method="PUT", path="/open/voice/conference"),
    "bytes-not-utf8": Bad("error_malformed_params", body=b"app_id=acme&dest=\xff\xfe"),
    "percent-not-utf8": Bad("error_malformed_params", body=b"app_id=acme&dest=%FF%FE"),
    "control-char": Bad("error_malformed_params", body=b"app_id=acme&dest=%2B65%00"),
    "json-body": Bad("error_malformed_params", body=b'{"dest": "+6511111111"}',
                     content_type="application/json"),
    "app_id-missing": Bad("error_app_id_param_missing", {"app_id": None}),
    "app_id-empty": Bad("error_app_id_param_missing", {"app_id": ""}),
    "access_token-missing": Bad("error_access_token_param_missing", {"access_token": None}),
    "dest-missing": Bad("error_dest_param_missing", {"dest": None}),
    "dest-missing-get": Bad("error_dest_param_missing", {"dest": None}, method="GET"),
    "dest-missing-sdk-path": Bad("error_dest_param_missing", {"dest": None},
                                 path="/open/voice/conference"),
    "app-unknown": Bad("error_invalid_app_id", {"app_id": "nosuchapp"}),
    "token-wrong": Bad("error_invalid_access_token", {"access_token": "cb_not-a-token"}),
    "token-of-other-app": Bad("error_invalid_access_token", {"access_token": "@other"}),
    "tag-257": Bad("error_tag_invalid_length", {"tag": "x" * 257}),
    "dest-no-plus": Bad("error_dest_invalid", {"dest": "6511111111"}),
    "dest-letters": Bad("error_dest_invalid", {"dest": "+65abc"}),
    "dest-leading-zero": Bad("error_dest_invalid", {"dest": "+06511111111"}),
    "dest-16-digits": Bad("error_dest_invalid", {"dest": "+1234567890123456"}),
    "dest-empty-item": Bad("error_dest_invalid", {"dest": "+6511111111,"}),
    "dest-sip-uri": Bad("error_dest_invalid", {"dest": "sip:alice@127.0.0.1"}),
    "dest-nine": Bad("error_dest_invalid", {"dest": ",".join(numbers(9))}),
    "room-33": Bad("error_invalid_room", {"room": "r" * 33}),
    "room-hyphen": Bad("error_invalid_room", {"room": "my-room"}),
    "room-space": Bad("error_invalid_room", {"room": "my room"}),
    "room-unicode": Bad("error_invalid_room", {"room": "räum"}),
    "room-reserved": Bad("error_invalid_room", {"room": "later"}),
    "notify-ftp": Bad("error_invalid_notify_url", {"notify_url": "ftp://example.org/n"}),
    "notify-relative": Bad("error_invalid_notify_url", {"notify_url": "/hook"}),
    "notify-no-host": Bad("error_invalid_notify_url", {"notify_url": "http:///hook"}),
    "notify-bad-port": Bad("error_invalid_notify_url", {"notify_url": "http://a.example:99999/"}),
    "notify-unresolvable": Bad("error_unable_to_resolve_notify_url",
                               {"notify_url": "http://no-such-host.invalid/hook"}),
    "caller-id-name": Bad("error_caller_id_invalid", {"caller_id": "bob"}),
    "caller-id-not-owned": Bad("error_caller_id_invalid", {"caller_id": "+6599999999"}),
    "no-trunk": Bad("error_dest_not_supported", trunk=False),
}  # fmt: skip


async def send(client: httpx.AsyncClient, app: App, case: Bad) -> httpx.Response:
    if case.body is not None:
        headers = {"Content-Type": case.content_type}
        return await client.post(case.path, content=case.body, headers=headers)
    fields = {**app.auth, "dest": "+6511111111", **case.params}
    sent = {k: v for k, v in fields.items() if v is not None}
    if case.method == "POST":
        return await client.post(case.path, data=sent)
    return await client.request(case.method, case.path, params=sent)


async def setup_rooms(client: httpx.AsyncClient, app: App, other: App) -> None:
    """Another application's open room, and one of ours not started yet (RESERVED)."""
    made = await client.post("/v1/conferences", json={"name": "theirs"}, headers=other.bearer)
    assert made.status_code == 201, made.text
    start_time = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    body = {"name": "later", "start_time": start_time}
    made = await client.post("/v1/conferences", json=body, headers=app.bearer)
    assert made.status_code == 201 and made.json()["state"] == "RESERVED", made.text


@pytest.mark.parametrize("name", list(BAD))
async def test_bad_request_gets_its_status(tmp_path: Path, name: str) -> None:
    case = BAD[name]
    trunk = Trunk(tmp_path) if case.trunk else None  # numbers route there; nothing is dialled
    runtime = await start(tmp_path, trunk, rooms={"names": ("lobby",)})
    try:
        async with http(runtime) as client:
            app = await App.create(client)
            other = await App.create(client, "globex")
            await setup_rooms(client, app, other)
            if case.params.get("access_token") == "@other":
                case = dataclasses.replace(case, params={"access_token": other.token})
            reply = await send(client, app, case)
            assert reply.status_code == 200, reply.text
            assert reply.json() == {"status": case.status}
            if case.status == "error_invalid_http_method":
                assert reply.headers["allow"] == "GET, POST"
            assert runtime.plane is not None
            assert runtime.plane.dialouts.records == {}
            listed = (await client.get("/v1/conferences", headers=app.bearer)).json()
            assert [c["name"] for c in listed] == ["later"]  # nothing created when refused
            assert (await client.get("/v1/health")).status_code == 200
    finally:
        await runtime.stop()
