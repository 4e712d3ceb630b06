"""Issue 15: an ended conference's record is kept `conferences.retention_days`, and its name is
never created by dialling until then (404 "Conference has ended"); once purged, the name is
free: dialling it makes an open room, and the tenant's API no longer knows it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import httpx
import pytest

from bridge.config import ConferencesConfig, ConfigError, load_config
from bridge.tools.phone import Phone
from control.runtime import Runtime
from tests.integration.harness import (
    ADMIN_TOKEN,
    LOOPBACK,
    FakeClock,
    eventually,
    loopback_config,
    with_control,
)

pytestmark = pytest.mark.integration


async def test_an_ended_name_is_kept_for_the_retention_then_free(tmp_path: Path) -> None:
    clock = FakeClock()
    config = with_control(loopback_config(), tmp_path / "data")
    config = dataclasses.replace(config, conferences=ConferencesConfig(retention_days=30))
    runtime = await Runtime(config, clock=clock).start()
    assert runtime.plane is not None
    port = runtime.bridge.transports.udp_port
    try:
        async with httpx.AsyncClient(base_url=runtime.base_url, trust_env=False) as client:
            admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            reply = await client.post("/v1/admin/applications/acme/tokens", headers=admin)
            tenant = {"Authorization": f"Bearer {reply.json()['token']}"}
            body = {"name": "board", "access": "room", "code": "4711"}
            assert (await client.post("/v1/conferences", json=body, headers=tenant)).is_success
            assert (await client.delete("/v1/conferences/board", headers=tenant)).is_success
            caller = Phone(LOOPBACK, port, "board", user="early")
            assert await caller.call() == 404

            clock.advance(days=29, hours=23)
            await runtime.plane.purge_expired()  # the scheduler's hourly pass, run now
            assert await Phone(LOOPBACK, port, "board", user="day29").call() == 404
            got = await client.get("/v1/conferences/board", headers=tenant)
            assert got.status_code == 200 and got.json()["state"] == "COMPLETED"

            clock.advance(hours=2)  # 30 days and an hour after it ended
            runtime.plane.wake_scheduler()
            await eventually(lambda: "board" not in runtime.plane.owners)
            assert (await client.get("/v1/conferences/board", headers=tenant)).status_code == 404
            late = Phone(LOOPBACK, port, "board", user="late")
            assert await late.call() == 200  # now an open room made by dialling
            await late.hangup()
    finally:
        await runtime.stop()


@pytest.mark.parametrize("value", ["-1", "36501", "ten"])
def test_a_bad_retention_is_refused_naming_the_key(value: str) -> None:
    with pytest.raises(ConfigError, match=r"conferences\.retention_days"):
        load_config(None, {"CONFBRIDGE_CONFERENCES_RETENTION_DAYS": value})
