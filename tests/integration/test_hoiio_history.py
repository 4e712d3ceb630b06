"""Hoiio (seed 001) beyond conference/call, with a real HTTP client against the running bridge
and SIPp as the trunk: `unanswered`, `busy` and `failed` calls end to end (the form-encoded
notification, then voice/query_status and voice/get_history saying the same, with the `tag`),
a second request adding people to an existing room, the history kept across a restart, and
the bad input of both new requests."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import (
    LOOPBACK,
    SCENARIOS,
    FakeClock,
    eventually,
    free_port,
    run_sipp,
    sipp_listening,
)
from tests.integration.test_compat_hoiio import GMT8, App, FormReceiver, callers, http, start

pytestmark = pytest.mark.integration

STATUS = "/open/voice/query_status"
HISTORY = "/open/voice/get_history"
FORM = "application/x-www-form-urlencoded"
ENDED_FIELDS = {
    "status", "txn_ref", "tag", "dest1", "call_status_dest1", "call_state", "room", "date",
    "currency", "rate", "duration", "debit",
}  # fmt: skip


@dataclasses.dataclass
class Trunk:
    """The SIP trunk: one SIPp UAS playing `scenario` for `calls` calls."""

    tmp_path: Path
    port: int = dataclasses.field(default_factory=free_port)
    task: asyncio.Task[Any] | None = None

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    async def run(self, scenario: str, calls: int) -> None:
        workdir = self.tmp_path / f"trunk-{scenario}-{self.port}"
        workdir.mkdir()
        args = ["-sf", str(SCENARIOS / scenario), "-m", str(calls)]
        self.task = asyncio.create_task(run_sipp(None, args, workdir, timeout=60, port=self.port))
        await sipp_listening(self.port)

    async def done(self) -> Any:
        assert self.task is not None
        return await asyncio.wait_for(self.task, 40)


async def ask(app: App, path: str, method: str = "POST", **params: str) -> dict[str, Any]:
    fields = {**app.auth, **params}
    if method == "POST":
        reply = await app.client.post(path, data=fields)
    else:
        reply = await app.client.get(path, params=fields)
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("application/json")
    return dict(reply.json())


def gmt8(moment: datetime) -> str:
    return moment.astimezone(GMT8).strftime("%Y-%m-%d %H:%M:%S")


@pytest.mark.parametrize(
    ("scenario", "outcome"),
    [
        ("uas_no_answer.xml", "unanswered"),
        ("uas_reject_486.xml", "busy"),
        ("uas_reject_503.xml", "failed"),
    ],
)
async def test_unanswered_busy_failed_end_to_end(
    tmp_path: Path, scenario: str, outcome: str
) -> None:
    trunk = Trunk(tmp_path)
    runtime = await start(tmp_path, trunk, ring_timeout_s=2)
    await trunk.run(scenario, 1)
    receiver = FormReceiver()
    await receiver.start()
    try:
        async with http(runtime) as client:
            app = await App.create(client)
            body = await app.call(dest="+6511111111", tag="order-7", notify_url=receiver.url())
            assert body["status"] == "success_ok", body
            (ref,) = body["txn_refs"]
            await eventually(lambda: len(receiver.posts) >= 1, timeout=30)
            kind, fields = receiver.posts[0]
            assert kind == "application/x-www-form-urlencoded"
            assert fields["txn_ref"] == ref and fields["dest"] == "+6511111111"
            assert fields["call_status_dest"] == outcome and fields["call_state"] == "ended"
            assert fields["tag"] == "order-7" and fields["duration"] == "0"

            status = await ask(app, STATUS, txn_ref=ref)
            assert set(status) == ENDED_FIELDS, status
            assert status["status"] == "success_ok" and status["txn_ref"] == ref
            assert status["call_status_dest1"] == outcome and status["call_state"] == "ended"
            assert status["tag"] == "order-7" and status["dest1"] == "+6511111111"
            assert status["duration"] == "0" and status["debit"] == "0.00"
            assert status["date"] == fields["date"] and status["room"] == body["room"]

            async def listed() -> list[dict[str, Any]]:
                return list((await ask(app, HISTORY, "GET"))["entries"])

            for _ in range(100):
                if await listed():
                    break
                await asyncio.sleep(0.1)
            (entry,) = await listed()
            assert entry == {k: v for k, v in status.items() if k != "status"}
            await trunk.done()
    finally:
        await receiver.close()
        await runtime.stop()


async def test_second_request_adds_to_the_room_and_history_survives_restart(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    trunk = Trunk(tmp_path)
    runtime = await start(tmp_path, trunk, clock)
    await trunk.run("uas_answer.xml", 3)
    try:
        async with http(runtime) as client:
            app = await App.create(client)
            first = await app.call(dest="+6511111111", room="R123", tag="first")
            await eventually(lambda: callers(runtime, "R123") == ["+6511111111"])
            ongoing = await ask(app, STATUS, "GET", txn_ref=first["txn_refs"][0])
            assert ongoing["call_state"] == "ongoing" and ongoing["call_status_dest1"] == "answered"
            assert "duration" not in ongoing and "debit" not in ongoing  # "not provided"
            second = await app.call(dest="+6522222222,+6533333333", room="R123", tag="second")
            assert second["status"] == "success_ok" and second["room"] == "R123"
            everyone = ["+6511111111", "+6522222222", "+6533333333"]
            await eventually(lambda: callers(runtime, "R123") == everyone)
            await app.end("R123")
            await trunk.done()
            refs = first["txn_refs"] + second["txn_refs"]

            async def history(**params: str) -> dict[str, Any]:
                return await ask(app, HISTORY, **params)

            for _ in range(100):
                if (await history())["total_entries_count"] == 3:
                    break
                await asyncio.sleep(0.1)
            listing = await history()
            assert listing["status"] == "success_ok" and listing["entries_count"] == 3
            assert [e["txn_ref"] for e in listing["entries"]] == refs  # oldest first
            assert [e["tag"] for e in listing["entries"]] == ["first", "second", "second"]
            assert {e["call_status_dest1"] for e in listing["entries"]} == {"answered"}
            assert {e["duration"] for e in listing["entries"]} == {"1"}
    finally:
        await runtime.stop()

    runtime = await start(tmp_path, None, clock)  # the same database: a restart
    try:
        async with http(runtime) as client:
            app = await App.create(client)
            status = await ask(app, STATUS, txn_ref=refs[1])
            assert status["tag"] == "second" and status["call_state"] == "ended"
            assert status["dest1"] == "+6522222222" and status["room"] == "R123"
            now = clock()
            window = {"from": gmt8(now - timedelta(hours=1)), "to": gmt8(now + timedelta(hours=1))}
            assert (await ask(app, HISTORY, **window))["total_entries_count"] == 3
            before = {"to": gmt8(now - timedelta(hours=1))}
            empty = await ask(app, HISTORY, **before)
            assert empty == {
                "status": "success_ok",
                "total_entries_count": 0,
                "entries_count": 0,
                "entries": [],
            }
            past_end = await ask(app, HISTORY, page="2")
            assert past_end["entries"] == [] and past_end["total_entries_count"] == 3
            other = await App.create(client, "globex")
            assert (await ask(other, STATUS, txn_ref=refs[0]))["status"] == "error_invalid_txn_ref"
            assert (await ask(other, HISTORY))["total_entries_count"] == 0
    finally:
        await runtime.stop()


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        (STATUS, {}, "error_txn_ref_param_missing"),
        (STATUS, {"txn_ref": "nope"}, "error_invalid_txn_ref"),
        (STATUS, {"access_token": "wrong", "txn_ref": "x"}, "error_invalid_access_token"),
        (STATUS, {"app_id": "", "txn_ref": "x"}, "error_app_id_param_missing"),
        (HISTORY, {"from": "yesterday"}, "error_invalid_from"),
        (HISTORY, {"to": "2026-13-01 00:00:00"}, "error_invalid_to"),
        (HISTORY, {"from": "2026-01-02 00:00:00", "to": "2026-01-01 00:00:00"}, "error_invalid_to"),
        (HISTORY, {"page": "0"}, "error_invalid_page"),
        (HISTORY, {"page": "two"}, "error_invalid_page"),
        (HISTORY, {"app_id": "nobody"}, "error_invalid_app_id"),
    ],
)
async def test_bad_status_and_history_requests(
    tmp_path: Path, path: str, params: dict[str, str], status: str
) -> None:
    runtime = await start(tmp_path, None)
    try:
        async with http(runtime) as client:
            app = await App.create(client)
            fields = {**app.auth, **params}
            reply = await client.post(path, data=fields)
            assert reply.status_code == 200 and reply.json() == {"status": status}
            wrong = await client.put(path, data=fields)
            assert wrong.json() == {"status": "error_invalid_http_method"}
            garbled = await client.post(
                path, content=b"app_id=\xff", headers={"Content-Type": FORM}
            )
            assert garbled.json() == {"status": "error_malformed_params"}
            assert (await client.get("/v1/health")).status_code == 200
    finally:
        await runtime.stop()
