"""Issue 15: dial-in names mapped to tenants (`[[application]] dial_in`). A room made by dialling
one of acme's numbers is acme's: it sees and controls it through /v1/rooms (list, mute, eject),
with its conferences' live rooms beside it; another tenant gets the same 404 as for a room
that does not exist, cannot take the name for a conference, and a room nobody's numbers name
is nobody's to see but the operator's. Bad dial_in settings stop the configuration."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import httpx
import pytest

from bridge.config import ApplicationDefinition, ConfigError, load_config
from bridge.tools.phone import Phone
from control.runtime import Runtime
from tests.integration.harness import (
    ADMIN_TOKEN,
    LOOPBACK,
    eventually,
    loopback_config,
    with_control,
)

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ACME_TOKEN = "acme-config-token-0123"
GLOBEX_TOKEN = "globex-config-token-0123"
ACME_NUMBER = "4930123456"


async def test_a_tenant_sees_and_controls_the_rooms_its_numbers_map_to(tmp_path: Path) -> None:
    config = with_control(loopback_config(), tmp_path / "data")
    apps = (
        ApplicationDefinition("acme", token=ACME_TOKEN, dial_in=(ACME_NUMBER, "acme.sales")),
        ApplicationDefinition("globex", token=GLOBEX_TOKEN, dial_in=("4940999",)),
    )
    runtime = await Runtime(dataclasses.replace(config, application=apps)).start()
    port = runtime.bridge.transports.udp_port
    caller = Phone(LOOPBACK, port, ACME_NUMBER, user="+15550100")
    stranger = Phone(LOOPBACK, port, "walkin", user="+15550199")
    member = Phone(LOOPBACK, port, "board", user="+15550111")
    acme = {"Authorization": f"Bearer {ACME_TOKEN}"}
    globex = {"Authorization": f"Bearer {GLOBEX_TOKEN}"}
    try:
        async with httpx.AsyncClient(base_url=runtime.base_url, trust_env=False) as client:
            reply = await client.post("/v1/conferences", json={"name": "board"}, headers=acme)
            assert reply.status_code == 201, reply.text
            assert await caller.call() == 200
            assert await stranger.call() == 200
            assert await member.call() == 200
            await eventually(lambda: len(runtime.bridge.control.participants(ACME_NUMBER)) == 1)
            await eventually(lambda: len(runtime.bridge.control.participants("board")) == 1)

            listed = {r["name"]: r for r in (await client.get("/v1/rooms", headers=acme)).json()}
            assert set(listed) == {ACME_NUMBER, "board"}
            assert listed[ACME_NUMBER]["origin"] == "dialled"
            assert listed[ACME_NUMBER]["participants"] == 1
            assert listed["board"]["origin"] == "conference"
            assert (await client.get("/v1/rooms", headers=globex)).json() == []
            assert (await client.get("/v1/rooms")).status_code == 401

            # Another tenant's room, and a room that is nobody's, look like a missing one.
            def swapped(reply: httpx.Response, name: str) -> tuple[int, str]:
                return reply.status_code, reply.text.replace(name, "X")

            theirs = await client.get(f"/v1/rooms/{ACME_NUMBER}/participants", headers=globex)
            nobodys = await client.get("/v1/rooms/walkin/participants", headers=acme)
            missing = await client.get("/v1/rooms/nosuch/participants", headers=globex)
            assert theirs.status_code == 404
            assert swapped(theirs, ACME_NUMBER) == swapped(missing, "nosuch")
            assert swapped(nobodys, "walkin") == swapped(missing, "nosuch")

            # acme controls its dialled room's caller.
            people = await client.get(f"/v1/rooms/{ACME_NUMBER}/participants", headers=acme)
            (person,) = people.json()
            assert person["caller"] == "+15550100"
            url = f"/v1/rooms/{ACME_NUMBER}/participants/{person['id']}"
            assert (
                await client.patch(url, json={"muted": True}, headers=globex)
            ).status_code == 404
            muted = await client.patch(url, json={"muted": True}, headers=acme)
            assert muted.status_code == 200 and muted.json()["muted"] is True
            bad = await client.patch(url, json={"volume_db": 99}, headers=acme)
            assert bad.status_code == 400
            assert (await client.delete(url, headers=globex)).status_code == 404
            assert (await client.delete(url, headers=acme)).status_code == 204
            await eventually(lambda: caller.ended_by_bridge)
            assert (await client.delete(url, headers=acme)).status_code == 404

            # Nobody else may make a conference of acme's number; acme may.
            taken = await client.post("/v1/conferences", json={"name": ACME_NUMBER}, headers=globex)
            ivr = await client.post("/v1/conferences", json={"name": "conference"}, headers=globex)
            assert taken.status_code == ivr.status_code == 409
            assert swapped(taken, ACME_NUMBER) == swapped(ivr, "conference")
            own = await client.post("/v1/conferences", json={"name": "acme.sales"}, headers=acme)
            assert own.status_code == 201, own.text

            # The operator sees whose dialled room it is.
            admin_rooms = {
                r["name"]: r for r in (await client.get("/v1/admin/rooms", headers=ADMIN)).json()
            }
            assert admin_rooms["walkin"]["application"] is None
    finally:
        for phone in (caller, stranger, member):
            await phone.close()
        await runtime.stop()


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            '[[application]]\nname = "a"\ntoken = "aaaaaaaaaaaaaaaa"\ndial_in = ["123"]\n'
            '[[application]]\nname = "b"\ntoken = "bbbbbbbbbbbbbbbb"\ndial_in = ["123"]\n',
            "dial_in: '123' is already 'a''s",
        ),
        (
            '[[application]]\nname = "a"\ntoken = "aaaaaaaaaaaaaaaa"\ndial_in = ["+4930"]\n',
            "dial_in: each must match",
        ),
    ],
)
def test_bad_dial_in_settings_are_refused(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert message in str(caught.value)
