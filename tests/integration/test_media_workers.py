"""Issue 7, check 2: rooms on media worker processes.

With 2 workers, two rooms of three land on different workers (seen in /metrics), each mixes
correctly (FFT of what every phone hears, a mute through the API included), and killing one
worker's process hangs up its calls with BYE and participant.left / call.ended events (reason
`media_worker_died`), and ends its room's recording (recording.stopped, same reason, the file
kept as far as it was written), while the other worker's callers go on hearing each other and
their room's recording goes on. The dead
worker is replaced, and its slot serves a new room.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bridge.media.tones import tone_levels
from bridge.mixing.workers.backend import WorkerMedia
from bridge.mixing.workers.pool import HUNG_SECONDS
from bridge.server import BridgeServer
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

HEARD_DB = -30.0
ABSENT_DB = -50.0
ROOM_TONES = {"east": [440.0, 1000.0, 1700.0], "west": [620.0, 1300.0, 2300.0]}
EVERY_TONE = [tone for tones in ROOM_TONES.values() for tone in tones]


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    config = with_control(loopback_config(media_workers=2), tmp_path / "data")
    config = dataclasses.replace(
        config, recording=dataclasses.replace(config.recording, dir=str(tmp_path / "rec"))
    )
    running = await Runtime(config).start()
    try:
        yield running
    finally:
        await running.stop()


async def metrics(client: httpx.AsyncClient) -> dict[tuple[str, str], float]:
    """/metrics samples by (name, worker label or "")."""
    text = (await client.get("/metrics")).text
    return {
        (sample.name, sample.labels.get("worker", "")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def levels(phone: Phone, seconds: float) -> dict[float, float]:
    now = asyncio.get_running_loop().time()
    audio = phone.audio(now - seconds, now)
    assert len(audio) >= 0.8 * 8000 * seconds, f"{phone.user} heard {len(audio)} samples"
    return tone_levels(audio, EVERY_TONE)


def assert_mix(phones: list[Phone], room: str, silent: tuple[float, ...] = ()) -> None:
    """Each phone hears its room-mates' tones (but not `silent` ones), never its own, never
    the other room's."""
    for phone in phones:
        heard = levels(phone, 1.5)
        for tone in EVERY_TONE:
            mate = tone in ROOM_TONES[room] and tone != phone.tone_hz and tone not in silent
            if mate:
                assert heard[tone] > HEARD_DB, (phone.user, tone, heard)
            else:
                assert heard[tone] < ABSENT_DB, (phone.user, tone, heard)


async def test_rooms_spread_mix_and_survive_a_dead_worker(runtime: Runtime) -> None:
    port = runtime.bridge.transports.udp_port
    phones = {
        room: [Phone(LOOPBACK, port, room, tone_hz=t, user=f"{room}{int(t)}") for t in tones]
        for room, tones in ROOM_TONES.items()
    }
    events: list[tuple[str, dict]] = []
    async with httpx.AsyncClient(base_url=runtime.base_url, timeout=10, trust_env=False) as client:
        token = await client.post(
            "/v1/admin/applications/acme/tokens",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        acme = {"Authorization": f"Bearer {token.json()['token']}"}
        for room in ROOM_TONES:
            reply = await client.post("/v1/conferences", json={"name": room}, headers=acme)
            assert reply.status_code == 201, reply.text

        async def watch() -> None:
            types = "participant.left,call.ended,recording.stopped"
            async with client.stream("GET", f"/v1/events?types={types}", headers=acme) as stream:
                kind = ""
                async for line in stream.aiter_lines():
                    if line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: "):
                        events.append((kind, json.loads(line[6:])))

        watcher = asyncio.create_task(watch())
        try:
            for room_phones in phones.values():
                for phone in room_phones:
                    assert await phone.call() == 200
            # spread: one room on each worker, three participants each
            seen = await metrics(client)
            assert seen[("confbridge_media_workers", "")] == 2
            for worker in ("0", "1"):
                assert seen[("confbridge_worker_rooms", worker)] == 1, seen
                assert seen[("confbridge_worker_participants", worker)] == 3, seen
            await asyncio.sleep(2.0)
            for room, room_phones in phones.items():
                assert_mix(room_phones, room)

            # flags set through the API reach the worker: mute west's 1300 Hz caller
            listed = (await client.get("/v1/conferences/west/participants", headers=acme)).json()
            (loud,) = [p for p in listed if p["caller"] == "west1300"]
            reply = await client.patch(
                f"/v1/conferences/west/participants/{loud['id']}",
                json={"muted": True},
                headers=acme,
            )
            assert reply.status_code == 200, reply.text
            await asyncio.sleep(2.0)
            assert_mix(phones["west"], "west", silent=(1300.0,))
            assert_mix(phones["east"], "east")

            # both rooms are being recorded when east's worker dies
            for room in ROOM_TONES:
                reply = await client.post(f"/v1/conferences/{room}/recording", headers=acme)
                assert reply.status_code == 201, reply.text
            await asyncio.sleep(1.0)

            # kill east's worker
            media = runtime.bridge.media
            assert isinstance(media, WorkerMedia)
            east_worker = str(media.room_workers["east"])
            west_worker = str(media.room_workers["west"])
            dead_pid = int(seen[("confbridge_worker_pid", east_worker)])
            os.kill(dead_pid, signal.SIGKILL)

            await eventually(lambda: all(p.ended_by_bridge for p in phones["east"]), timeout=10)

            def reason_count(kind: str) -> int:
                return sum(
                    1
                    for k, data in events
                    if k == kind
                    and data.get("reason") == "media_worker_died"
                    and data["conference"] == "east"
                )

            await eventually(lambda: reason_count("participant.left") == 3, timeout=10)
            await eventually(lambda: reason_count("call.ended") == 3, timeout=10)
            await eventually(lambda: reason_count("recording.stopped") == 1, timeout=10)
            (ended,) = [d for k, d in events if k == "recording.stopped"]
            assert ended["size_bytes"] > 50_000 and os.path.exists(ended["path"]), ended
            assert not any(data["conference"] == "west" for _, data in events), events
            assert not any(p.ended_by_bridge for p in phones["west"])
            await asyncio.sleep(1.5)
            assert_mix(phones["west"], "west", silent=(1300.0,))
            reply = await client.delete("/v1/conferences/west/recording", headers=acme)
            assert reply.status_code == 204, reply.text  # west's recording went on till now
            await eventually(lambda: len([k for k, _ in events if k == "recording.stopped"]) == 2)
            (west,) = [d for k, d in events if k == "recording.stopped" and d != ended]
            assert west["conference"] == "west", west
            assert west["reason"] == "stopped" and west["duration_s"] > 2.0, west

            # a new process took the dead one's place and serves a new room
            seen = await metrics(client)
            assert seen[("confbridge_worker_restarts_total", east_worker)] == 1
            assert seen[("confbridge_worker_restarts_total", west_worker)] == 0
            assert seen[("confbridge_worker_pid", east_worker)] != dead_pid
            again = [Phone(LOOPBACK, port, "east", tone_hz=t, user=f"again{int(t)}") for t in
                     ROOM_TONES["east"]]
            for phone in again:
                assert await phone.call() == 200
            await asyncio.sleep(2.0)
            assert_mix(again, "east")
            assert media.room_workers["east"] == int(east_worker)
            phones["again"] = again
        finally:
            watcher.cancel()
            for room_phones in phones.values():
                for phone in room_phones:
                    await phone.hangup()


async def test_a_stuck_worker_is_killed_and_its_calls_hung_up() -> None:
    """A worker that stops answering (SIGSTOP here: alive, but silent) is no better than a
    dead one: after HUNG_SECONDS without a report it is killed, its calls get BYE, and a new
    process takes its place; the other worker's call goes on."""
    bridge = await BridgeServer(loopback_config(media_workers=2)).start()
    media = bridge.media
    assert isinstance(media, WorkerMedia)
    port = bridge.transports.udp_port
    stuck = Phone(LOOPBACK, port, "stuck", tone_hz=440.0, user="stuck")
    fine = [Phone(LOOPBACK, port, "fine", tone_hz=t, user=f"fine{int(t)}") for t in (620, 1300)]
    try:
        for phone in (stuck, *fine):
            assert await phone.call() == 200
        worker = media.room_workers["stuck"]
        assert media.room_workers["fine"] != worker
        pid = media.workers[worker].process.pid
        os.kill(pid, signal.SIGSTOP)
        await eventually(lambda: stuck.ended_by_bridge, timeout=HUNG_SECONDS + 10)
        assert media.workers[worker].restarts == 1
        assert media.workers[worker].process.pid != pid
        assert not any(phone.ended_by_bridge for phone in fine)
        await asyncio.sleep(1.5)
        heard = tone_levels(fine[0].audio(asyncio.get_running_loop().time() - 1.0), [1300.0])
        assert heard[1300.0] > HEARD_DB
    finally:
        for phone in (stuck, *fine):
            await phone.hangup()
        await bridge.stop()


async def test_with_fill_workers_rooms_fill_one_worker_before_the_next() -> None:
    """`media.fill_workers = 3`: new rooms go to the first worker until it carries 3
    participants, then to the next (the default spreads them, as the tests above show); each
    room still hears only its own."""
    bridge = await BridgeServer(
        loopback_config(media_workers=2, media={"fill_workers": 3})
    ).start()
    media = bridge.media
    assert isinstance(media, WorkerMedia)
    await eventually(lambda: all(w.ready.is_set() for w in media.workers))
    port = bridge.transports.udp_port
    tones = {"a": (440.0, 620.0), "b": (1300.0, 1700.0), "c": (900.0,)}
    phones = {
        room: [Phone(LOOPBACK, port, room, tone_hz=t, user=f"{room}{int(t)}") for t in hz]
        for room, hz in tones.items()
    }
    try:
        for room_phones in phones.values():  # a: 2 on worker 0, b: 2 more (0 had 2 < 3)
            for phone in room_phones:
                assert await phone.call() == 200
        assert media.room_workers == {"a": 0, "b": 0, "c": 1}
        await asyncio.sleep(1.5)
        now = asyncio.get_running_loop().time()
        for room, other in (("a", "b"), ("b", "a")):  # its partner, not the other rooms
            partner, strangers = tones[room][1], [tones[other][0], tones["c"][0]]
            heard = tone_levels(phones[room][0].audio(now - 1.0), [partner, *strangers])
            assert heard[partner] > HEARD_DB, (room, heard)
            assert all(heard[hz] < HEARD_DB for hz in strangers), (room, heard)
    finally:
        for room_phones in phones.values():
            for phone in room_phones:
                await phone.hangup()
        await bridge.stop()
