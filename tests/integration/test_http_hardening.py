"""Issue 15, item 8: the HTTP API against a real client. Bodies over `control.max_body_bytes`
get 413 (declared or streamed), a source with too many failed authentications, through any API,
gets 429 with Retry-After while another source is served, and the admin token and tenant tokens
keep working for others."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from control.runtime import Runtime
from tests.integration.harness import ADMIN_TOKEN, loopback_config, with_control

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
LIMIT = 5


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    config = with_control(loopback_config(), tmp_path / "data")
    control = dataclasses.replace(
        config.control, max_body_bytes=4096, auth_failure_limit=LIMIT, auth_block_s=120
    )
    running = await Runtime(dataclasses.replace(config, control=control)).start()
    try:
        yield running
    finally:
        await running.stop()


def client(runtime: Runtime, source: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(local_address=source)
    return httpx.AsyncClient(base_url=runtime.base_url, transport=transport, trust_env=False)


async def test_bodies_over_the_limit_get_413(runtime: Runtime) -> None:
    async with client(runtime) as http:
        made = await http.post("/v1/admin/applications/acme/tokens", headers=ADMIN)
        acme = {"Authorization": f"Bearer {made.json()['token']}"}
        big = b'{"name": "' + b"x" * 5000 + b'"}'
        declared = await http.post(
            "/v1/conferences", content=big, headers={**acme, "Content-Type": "application/json"}
        )
        assert declared.status_code == 413
        assert declared.json()["message"] == "body: at most 4096 bytes"

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
            for _ in range(10):
                yield b" " * 1000

        streamed = await http.post("/v1/conferences", content=chunks(), headers=acme)
        assert streamed.status_code == 413
        form_type = {"Content-Type": "application/x-www-form-urlencoded"}
        form = await http.post(
            "/aculab/conference_list", content=b"a=" + b"b" * 5000, headers=form_type
        )
        assert form.status_code == 413
        fine = await http.post("/v1/conferences", json={"name": "ok"}, headers=acme)
        assert fine.status_code == 201  # the server is unharmed
    # a Content-Length that is not a number: refused before any route (raw, httpx will not send it)
    reader, writer = await asyncio.open_connection("127.0.0.1", runtime.http_port)
    writer.write(b"POST /v1/conferences HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n{}")
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), 5)
    assert status.split()[1] in (b"400", b"413"), status
    writer.close()


async def test_failed_authentications_block_the_source_not_others(runtime: Runtime) -> None:
    async with client(runtime) as attacker, client(runtime, "127.0.0.2") as other:
        made = await other.post("/v1/admin/applications/acme/tokens", headers=ADMIN)
        token = made.json()["token"]
        guesses = [
            attacker.get("/v1/conferences", headers={"Authorization": "Bearer guess1"}),
            attacker.get("/v1/admin/applications", headers={"Authorization": "Bearer guess2"}),
            attacker.get("/aculab/conference_list", auth=("acme", "guess3")),
            attacker.get("/open/conference/call", params={"app_id": "acme",
                                                          "access_token": "guess4"}),
            attacker.get("/v1/conferences", headers={"Authorization": "Bearer guess5"}),
        ]  # fmt: skip
        for guess in guesses:
            assert (await guess).status_code != 429
        blocked = await attacker.get(
            "/v1/conferences", headers={"Authorization": f"Bearer {token}"}
        )
        assert blocked.status_code == 429
        assert blocked.json()["code"] == "too_many_requests"
        assert 0 < int(blocked.headers["Retry-After"]) <= 120
        # another address, the right token: served as usual
        assert (await other.get("/v1/conferences", headers={"Bearer": token})).status_code == 401
        served = await other.get("/v1/conferences", headers={"Authorization": f"Bearer {token}"})
        assert served.status_code == 200


async def test_missing_credentials_do_not_count(runtime: Runtime) -> None:
    async with client(runtime) as http:
        for _ in range(LIMIT * 2):
            assert (await http.get("/v1/conferences")).status_code == 401
        assert (await http.get("/v1/admin/applications", headers=ADMIN)).status_code == 200
