"""Aculab's `dtmf_enabled` (seed 004) with a real softphone: baresip in an application's room,
its keys sent as RFC 4733 events. With `dtmf_enabled=false` set through
conference_participant_set_options, the keypad does nothing (1 does not mute) while every digit
is still reported (`dtmf` webhooks); set back to true, the same key mutes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from control.runtime import Runtime
from tests.integration.baresip import Baresip
from tests.integration.harness import LOOPBACK, FakeClock, eventually
from tests.integration.test_compat_aculab import aculab, app_token, http, start
from tests.receiver import Receiver

pytestmark = pytest.mark.integration


async def participant(client: httpx.AsyncClient, auth: tuple[str, str]) -> dict[str, Any]:
    reply = await aculab(client, "conference_participant_list", auth, {"conference_name": "desk"})
    assert reply.status_code == 200, reply.text
    (person,) = reply.json()["participants"]
    return dict(person)


async def test_dtmf_disabled_keys_do_nothing_but_are_reported(tmp_path: Path) -> None:
    runtime: Runtime = await start(tmp_path, FakeClock())
    receiver = Receiver()
    await receiver.start()
    softphone = Baresip(tmp_path, tone_hz=440)
    try:
        async with http(runtime) as client:
            token = await app_token(client, "acme")
            auth, bearer = ("acme", token), {"Authorization": f"Bearer {token}"}
            made = await client.post("/v1/conferences", json={"name": "desk"}, headers=bearer)
            assert made.status_code == 201, made.text
            hook = {"callback_url": receiver.url(), "events": ["dtmf"]}
            assert (await client.post("/v1/subscriptions", json=hook, headers=bearer)).is_success

            await softphone.start()
            await softphone.dial(f"sip:desk@{LOOPBACK}:{runtime.bridge.transports.udp_port}")
            await eventually(lambda: len(runtime.bridge.control.participants("desk")) == 1)
            person = await participant(client, auth)
            assert person["dtmf_enabled"] is True and person["muted"] is False

            def digits() -> list[str]:
                return [r["data"]["digit"] for r in receiver.delivered if r["type"] == "dtmf"]

            options = {"conference_name": "desk", "participant_id": person["participant_id"]}
            off = await aculab(
                client,
                "conference_participant_set_options",
                auth,
                {**options, "dtmf_enabled": "false"},
            )
            assert off.status_code == 200, off.text
            assert (await participant(client, auth))["dtmf_enabled"] is False
            await softphone.command("1")
            await eventually(lambda: digits() == ["1"], timeout=10)
            assert (await participant(client, auth))["muted"] is False  # the keypad did nothing

            on = await aculab(
                client,
                "conference_participant_set_options",
                auth,
                {**options, "dtmf_enabled": "TRUE"},
            )
            assert on.status_code == 200, on.text
            await softphone.command("1")
            await eventually(lambda: digits() == ["1", "1"], timeout=10)

            async def muted() -> bool:
                return bool((await participant(client, auth))["muted"])

            for _ in range(50):
                if await muted():
                    break
                await asyncio.sleep(0.1)
            assert await muted()  # the same key mutes once keys are enabled
            methods = {r["data"]["method"] for r in receiver.delivered if r["type"] == "dtmf"}
            assert methods == {"rfc4733"}  # baresip's keys, as a softphone sends them
            await softphone.hangup()
    finally:
        await softphone.stop()
        await receiver.close()
        await runtime.stop()
