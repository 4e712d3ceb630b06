"""Issue 5 end to end: the conference calls SIPp callees (UAS scenarios) through the /v1 API:
"press # to join" by RFC 4733, outcomes answered / unanswered / busy / failed, digest auth
against a challenging trunk (the hash checked here), lists dialled in order with their
notifications, 10% packet loss, and bad requests."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge.config import ApplicationDefinition
from bridge.media.g711 import ulaw_decode
from bridge.media.tones import tone_levels
from bridge.sip.auth import verify
from bridge.tools.phone import Phone
from control.runtime import Runtime
from tests.integration.harness import (
    ADMIN_TOKEN,
    LOOPBACK,
    SCENARIOS,
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

TRUNK_USER, TRUNK_PASSWORD = "bridge", "s3cret-trunk"
HEARD_DB = -30.0


@dataclasses.dataclass
class Callee:
    """A SIPp UAS the bridge dials: its port, its task, its working directory."""

    port: int
    task: asyncio.Task[SippResult]
    workdir: Path

    @property
    def uri(self) -> str:
        return f"sip:callee@{LOOPBACK}:{self.port}"

    async def result(self, timeout: float = 30.0) -> SippResult:
        return await asyncio.wait_for(self.task, timeout)


async def callee(tmp_path: Path, scenario: str, *extra: str) -> Callee:
    port = free_port()
    workdir = tmp_path / f"{scenario}-{port}"
    workdir.mkdir()
    args = ["-sf", str(SCENARIOS / f"uas_{scenario}.xml"), "-m", "1", "-trace_logs", *extra]
    task = asyncio.create_task(run_sipp(None, args, workdir, timeout=40, port=port))
    await sipp_listening(port)
    return Callee(port, task, workdir)


OWNED = "+4930123456"  # acme's number (its [[application]] caller_ids)


async def start(tmp_path: Path, **dialout: Any) -> Runtime:
    config = with_control(loopback_config(), tmp_path / "data")
    settings = {"ring_timeout_s": 5, "confirm_timeout_s": 3, **dialout}
    config = dataclasses.replace(config, dialout=dataclasses.replace(config.dialout, **settings))
    acme = ApplicationDefinition("acme", token="acme-config-token-0123", caller_ids=(OWNED,))
    config = dataclasses.replace(config, application=(acme,))  # the caller id it may show
    return await Runtime(config).start()


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    running = await start(tmp_path)
    try:
        yield running
    finally:
        await running.stop()


class Api:
    """The tenant's view of the API, with a conference to call into."""

    def __init__(self, runtime: Runtime, client: httpx.AsyncClient, token: str) -> None:
        self.runtime, self.client = runtime, client
        self.headers = {"Authorization": f"Bearer {token}"}

    @classmethod
    async def open(cls, runtime: Runtime, client: httpx.AsyncClient) -> Api:
        reply = await client.post(
            "/v1/admin/applications/acme/tokens",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        return cls(runtime, client, reply.json()["token"])

    async def conference(self, name: str) -> None:
        reply = await self.client.post("/v1/conferences", json={"name": name}, headers=self.headers)
        assert reply.status_code == 201, reply.text

    async def call(self, room: str, **body: Any) -> httpx.Response:
        return await self.client.post(
            f"/v1/conferences/{room}/calls", json=body, headers=self.headers
        )

    async def refs(self, room: str, **body: Any) -> list[str]:
        reply = await self.call(room, **body)
        assert reply.status_code == 202, reply.text
        return list(reply.json()["txn_refs"])

    async def status(self, ref: str) -> str:
        reply = await self.client.get(f"/v1/dialouts/{ref}", headers=self.headers)
        return str(reply.json()["status"])

    async def wait_status(self, ref: str, timeout: float = 20.0) -> str:
        for _ in range(int(timeout / 0.1)):
            status = await self.status(ref)
            if status not in ("dialling", "ringing"):
                return status
            await asyncio.sleep(0.1)
        raise AssertionError(f"{ref} still {await self.status(ref)}")

    async def participants(self, room: str) -> list[dict[str, Any]]:
        reply = await self.client.get(f"/v1/conferences/{room}/participants", headers=self.headers)
        return list(reply.json())

    async def eject_all(self, room: str, caller: str) -> None:
        for person in await self.participants(room):
            if person["caller"] == caller:
                url = f"/v1/conferences/{room}/participants/{person['id']}"
                assert (await self.client.delete(url, headers=self.headers)).status_code == 204


def http(runtime: Runtime) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=runtime.base_url, timeout=15.0, trust_env=False)


class Tap:
    """RTP payloads sent to a UDP port on loopback, read off `lo` with a packet socket (SIPp
    cannot record what it receives, and the bridge is not opened up for it)."""

    PACKET_OUTGOING = 4  # each loopback packet is seen leaving and arriving: keep one

    def __init__(self, port: int) -> None:
        self.port = port
        self.payloads: list[bytes] = []
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
        self.sock.bind(("lo", 0))
        self.sock.setblocking(False)
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._read)

    def _read(self) -> None:
        while True:
            try:
                packet, address = self.sock.recvfrom(65535)
            except BlockingIOError:
                return
            if address[2] == self.PACKET_OUTGOING or packet[9] != socket.IPPROTO_UDP:
                continue
            udp = packet[(packet[0] & 0x0F) * 4 :]
            if struct.unpack("!H", udp[2:4])[0] == self.port:
                self.payloads.append(udp[8 + 12 :])  # past the UDP and RTP headers

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()


def tap(port: int) -> Tap:
    try:
        return Tap(port)
    except PermissionError:
        pytest.skip("reading what the callee hears needs a packet socket (CAP_NET_RAW)")


def notifications(receiver: Receiver) -> list[dict[str, Any]]:
    return [b["data"] for b in receiver.delivered if b["type"] == "call.notification"]


# --- 1. outcomes against SIPp callees -----------------------------------------------------------


async def test_callee_presses_pound_joins_and_hears_the_room(
    runtime: Runtime, tmp_path: Path
) -> None:
    receiver = Receiver()
    await receiver.start()
    host = Phone(LOOPBACK, runtime.bridge.transports.udp_port, "out1", tone_hz=440.0, user="host")
    media_port = free_port()
    sipp = await callee(tmp_path, "answer_pound", "-mp", str(media_port))
    heard = tap(media_port)
    try:
        async with http(runtime) as client:
            api = await Api.open(runtime, client)
            await api.conference("out1")
            assert await host.call() == 200
            (ref,) = await api.refs("out1", dest=sipp.uri, confirm=True, notify_url=receiver.url())
            assert await api.wait_status(ref) == "answered"
            people = await api.participants("out1")
            assert sorted(p["caller"] for p in people) == sorted(["host", sipp.uri])
            await asyncio.sleep(1.5)
            audio = ulaw_decode(b"".join(heard.payloads[-50:]))
            assert tone_levels(audio, [440.0])[440.0] > HEARD_DB
            await api.eject_all("out1", sipp.uri)
            result = await sipp.result()
            assert result.successful == 1, result.stderr[-800:]
            await eventually(lambda: notifications(receiver))
            (note,) = notifications(receiver)
            assert note["txn_ref"] == ref and note["call_status"] == "answered"
            assert note["dest"] == sipp.uri and note["duration"] >= 1 and note["rate"] == 0.0
    finally:
        heard.close()
        await host.hangup()
        await receiver.close()


@pytest.mark.parametrize(
    ("scenario", "status"),
    [("answer", "unanswered"), ("reject_486", "busy"), ("reject_503", "failed"),
     ("no_answer", "unanswered")],
)
async def test_outcomes(runtime: Runtime, tmp_path: Path, scenario: str, status: str) -> None:
    sipp = await callee(tmp_path, scenario)
    async with http(runtime) as client:
        api = await Api.open(runtime, client)
        await api.conference("out2")
        (ref,) = await api.refs("out2", dest=sipp.uri, confirm=True)
        assert await api.wait_status(ref) == status
        result = await sipp.result()  # no #: BYE after the confirm timeout; no answer: CANCEL
        assert result.successful == 1, result.stderr[-800:]
        assert await api.participants("out2") == []
        for _ in range(50):  # the call-detail record is written just after the call ends
            calls = (await client.get("/v1/calls", headers=api.headers)).json()
            if calls:
                break
            await asyncio.sleep(0.1)
        (record,) = calls
        assert record["direction"] == "out" and record["callee"] == sipp.uri
        assert record["end_reason"].startswith(status)


# --- 2. digest auth against a trunk -------------------------------------------------------------


@pytest.mark.parametrize("code", [401, 407])
async def test_trunk_challenge_is_answered_with_correct_credentials(
    tmp_path: Path, code: int
) -> None:
    sipp = await callee(tmp_path, f"auth_{code}")
    running = await start(
        tmp_path,
        trunk=f"{LOOPBACK}:{sipp.port}",
        trunk_username=TRUNK_USER,
        trunk_password=TRUNK_PASSWORD,
    )
    try:
        async with http(running) as client:
            api = await Api.open(running, client)
            await api.conference("trunked")
            (ref,) = await api.refs("trunked", dest="+15551234567", caller_id="+4930123456")
            assert await api.wait_status(ref) == "answered"
            await api.eject_all("trunked", "+15551234567")
            result = await sipp.result()
            assert result.successful == 1, result.stderr[-800:]
        logs = "".join(p.read_text() for p in sipp.workdir.glob("*_logs.log"))
        name = "Authorization" if code == 401 else "Proxy-Authorization"
        match = re.search(rf"^{name}:\s*(Digest .+)$", logs, re.MULTILINE)
        assert match, logs
        header = match.group(1).strip()
        assert f'username="{TRUNK_USER}"' in header and 'realm="trunk.test"' in header
        assert "qop=auth" in header and 'opaque="5ccc069c403ebaf9f0171e9517f40e41"' in header
        assert verify(header, "INVITE", TRUNK_PASSWORD)
        assert not verify(header, "INVITE", "wrong")
    finally:
        await running.stop()


# --- 3. a list dialled in order -----------------------------------------------------------------


async def test_three_destinations_dialled_in_order_with_notifications(
    runtime: Runtime, tmp_path: Path
) -> None:
    receiver = Receiver()
    await receiver.start()
    callees = [await callee(tmp_path, "answer") for _ in range(3)]
    try:
        async with http(runtime) as client:
            api = await Api.open(runtime, client)
            await api.conference("list3")
            refs = await api.refs(
                "list3", dest=[c.uri for c in callees], notify_url=receiver.url(), tag="batch-7"
            )
            assert len(refs) == 3
            for ref in refs:
                assert await api.wait_status(ref) == "answered"
            people = await api.participants("list3")
            assert sorted(p["caller"] for p in people) == sorted(c.uri for c in callees)
            listed = (await client.get("/v1/conferences/list3/calls", headers=api.headers)).json()
            started = [c["started_at"] for c in listed]
            assert started == sorted(started)  # one after another, in the order given
            await client.delete("/v1/conferences/list3", headers=api.headers)
            for one in callees:
                assert (await one.result()).successful == 1
            await eventually(lambda: len(notifications(receiver)) == 3)
            notes = notifications(receiver)
            assert sorted(n["txn_ref"] for n in notes) == sorted(refs)
            assert {n["call_status"] for n in notes} == {"answered"}
            assert {n["tag"] for n in notes} == {"batch-7"}
    finally:
        await receiver.close()


# --- 4. packet loss -----------------------------------------------------------------------------


async def test_calls_out_complete_with_ten_percent_loss(runtime: Runtime, tmp_path: Path) -> None:
    async with http(runtime) as client:
        api = await Api.open(runtime, client)
        await api.conference("lossy")
        for _ in range(3):
            sipp = await callee(tmp_path, "answer", "-lost", "10")
            (ref,) = await api.refs("lossy", dest=sipp.uri)
            assert await api.wait_status(ref, timeout=40) == "answered"
            await api.eject_all("lossy", sipp.uri)
            assert (await sipp.result(timeout=60)).successful == 1


# --- 5. bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"dest": "+12ab"}, "dest"),
        ({"dest": [f"+1555000000{i}" for i in range(9)]}, "dest"),
        ({"dest": "sip:nobody@no-such-host.invalid"}, "dest"),
        ({"dest": "mailto:someone@example.org"}, "dest"),
        ({"dest": "sip:a@127.0.0.1:5060", "tag": "x" * 257}, "tag"),
        ({"dest": "sip:a@127.0.0.1:5060", "notify_url": "ftp://example.org/n"}, "notify_url"),
        ({"dest": "sip:a@127.0.0.1:5060", "caller_id": "bob smith"}, "caller_id"),
        ({"dest": "sip:a@127.0.0.1:5060", "caller_id": "+4930999999"}, "caller_id"),  # not acme's
        ({"dest": "sip:a@127.0.0.1:5060", "ring": 5}, "ring"),
    ],
)
async def test_bad_requests_get_400_naming_the_field(
    runtime: Runtime, body: dict[str, Any], field: str
) -> None:
    async with http(runtime) as client:
        api = await Api.open(runtime, client)
        await api.conference("badin")
        reply = await api.call("badin", **body)
        assert reply.status_code == 400, reply.text
        assert reply.json()["message"].startswith(f"{field}:"), reply.json()
        assert (await client.get("/v1/health")).status_code == 200


async def test_concurrent_limit_and_a_receiver_that_is_down(tmp_path: Path) -> None:
    running = await start(tmp_path, max_concurrent=2)
    receiver = Receiver()
    await receiver.start()
    url, port = receiver.url(), receiver.port
    await receiver.close()  # down while the call ends
    callees = [await callee(tmp_path, "answer") for _ in range(2)]
    try:
        async with http(running) as client:
            api = await Api.open(running, client)
            await api.conference("limited")
            refs = await api.refs("limited", dest=[c.uri for c in callees], notify_url=url)
            more = await api.call("limited", dest="sip:x@127.0.0.1:5060")
            assert more.status_code == 429
            assert more.json()["code"] == "concurrent_call_limit"
            assert "at most 2" in more.json()["message"]
            for ref in refs:
                assert await api.wait_status(ref) == "answered"
            await client.delete("/v1/conferences/limited", headers=api.headers)
            for one in callees:
                assert (await one.result()).successful == 1
            await asyncio.sleep(1.0)
            receiver = Receiver()
            await receiver.start(port)  # back up: the outbox retries and delivers
            await eventually(lambda: len(notifications(receiver)) == 2, timeout=30)
            assert sorted(n["txn_ref"] for n in notifications(receiver)) == sorted(refs)
    finally:
        await receiver.close()
        await running.stop()


# --- caller id ----------------------------------------------------------------------------------


def logged(sipp: Callee, header: str) -> str:
    logs = "".join(p.read_text() for p in sipp.workdir.glob("*_logs.log"))
    match = re.search(rf"^{header}:[ \t]*(.*)$", logs, re.MULTILINE)
    assert match, logs
    return match.group(1).strip()


@pytest.mark.parametrize(
    ("caller_id", "from_user", "privacy", "pai"),
    [
        ("private", "anonymous", "id", ""),
        ("+4930123456", "+4930123456", "", "<sip:+4930123456@127.0.0.1>"),
        (None, "callerid", "", "<sip:callerid@127.0.0.1>"),  # the conference's own name
    ],
)
async def test_caller_id_private_number_or_the_conference(
    tmp_path: Path, caller_id: str | None, from_user: str, privacy: str, pai: str
) -> None:
    sipp = await callee(tmp_path, "answer_log")
    running = await start(tmp_path, trunk=f"{LOOPBACK}:{sipp.port}", trunk_pai=True)
    try:
        async with http(running) as client:
            api = await Api.open(running, client)
            await api.conference("callerid")
            body: dict[str, Any] = {"dest": "+15550001111"}
            if caller_id is not None:
                body["caller_id"] = caller_id
            (ref,) = await api.refs("callerid", **body)
            assert await api.wait_status(ref) == "answered"
            await api.eject_all("callerid", "+15550001111")
            assert (await sipp.result()).successful == 1
        assert logged(sipp, "From").startswith(f"<sip:{from_user}@")
        assert logged(sipp, "Privacy") == privacy
        assert logged(sipp, "P-Asserted-Identity") == pai
    finally:
        await running.stop()


async def test_maximum_call_duration_ends_the_call_with_bye(tmp_path: Path) -> None:
    sipp = await callee(tmp_path, "answer")
    running = await start(tmp_path, max_call_s=10)
    try:
        async with http(running) as client:
            api = await Api.open(running, client)
            await api.conference("capped")
            (ref,) = await api.refs("capped", dest=sipp.uri)
            assert await api.wait_status(ref) == "answered"
            loop = asyncio.get_running_loop()
            answered = loop.time()
            result = await sipp.result(timeout=30)  # the scenario succeeds on the bridge's BYE
            assert result.successful == 1
            assert loop.time() - answered >= 9.0  # ended by the limit, not earlier
            call = (await client.get(f"/v1/dialouts/{ref}", headers=api.headers)).json()
            assert call["status"] == "answered" and call["ended_at"]
    finally:
        await running.stop()
