"""Issue 15, Hoiio: room ids are per application, so another application's room name, a room
of the configuration file and a room made by dialling answer exactly as a free name does
(`success_ok` with the id asked for), and the calls land in the application's own room, never
in the other one. A second request with the same id finds the same room. The choice and why:
`control/api/dialects/hoiio_rooms.py`."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.tools.phone import Phone
from control.api.dialects.hoiio_rooms import private_name, public_id
from tests.integration.harness import LOOPBACK, eventually
from tests.integration.test_compat_hoiio import App, Trunk, callers, http, numbers, start

pytestmark = pytest.mark.integration


async def test_a_taken_name_answers_as_a_free_one_and_stays_apart(tmp_path: Path) -> None:
    trunk = Trunk(tmp_path)
    runtime = await start(tmp_path, trunk, rooms={"names": ("lobby",)})
    await trunk.answer(5)
    walker = Phone(LOOPBACK, runtime.bridge.transports.udp_port, "walkin", user="walker")
    plane = runtime.plane
    assert plane is not None
    try:
        async with http(runtime) as client:
            app = await App.create(client)
            other = await App.create(client, "globex")
            made = await client.post(
                "/v1/conferences", json={"name": "theirs"}, headers=other.bearer
            )
            assert made.status_code == 201, made.text
            assert await walker.call() == 200
            acme = await plane.store.tenants.get_tenant("acme")
            assert acme is not None

            dests = numbers(5)
            answers = {}
            for room, dest in zip(["free1", "theirs", "lobby", "walkin"], dests, strict=False):
                body = await app.call(dest=dest, room=room)
                assert body["status"] == "success_ok" and body["room"] == room, body
                assert set(body) == {"txn_refs", "room", "status"}
                answers[room] = dest
            again = await app.call(dest=dests[4], room="theirs")
            assert again["status"] == "success_ok" and again["room"] == "theirs"

            await eventually(lambda: callers(runtime, "free1") == [answers["free1"]])
            private = private_name(acme, "theirs")
            assert public_id(private) == "theirs"
            await eventually(
                lambda: callers(runtime, private) == sorted([answers["theirs"], dests[4]])
            )
            await eventually(lambda: callers(runtime, private_name(acme, "lobby")) == [dests[2]])
            await eventually(lambda: callers(runtime, private_name(acme, "walkin")) == [dests[3]])
            # Nobody landed in the others' rooms.
            assert callers(runtime, "theirs") == []
            assert callers(runtime, "walkin") == ["walker"]
            theirs = await client.get("/v1/conferences/theirs/participants", headers=other.bearer)
            assert theirs.json() == []
            for room in (
                "free1",
                private,
                private_name(acme, "lobby"),
                private_name(acme, "walkin"),
            ):
                await app.end(room)
            result = await trunk.result()
            assert result.successful == 5, result.stderr[-800:]
    finally:
        await walker.close()
        await runtime.stop()
