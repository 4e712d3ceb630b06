"""Issue 13: the media workers' shared RTP port (`rtp.shared_port`).

Two rooms of three callers dialled by room name land on the two workers; every caller of a
room is answered with its worker's one port, hears its room-mates and not itself (FFT), and
is sent to from that port (symmetric RTP). A caller through the code-entry IVR (room unknown
when answered) keeps its own port, joins a shared-port room on its worker, and everyone in
it hears everyone: one worker serves both kinds.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bridge.config import RoomDefinition
from bridge.media.tones import tone_levels
from bridge.mixing.workers.backend import WorkerMedia
from bridge.server import BridgeServer
from bridge.tools.phone import Phone
from tests.integration.harness import eventually, loopback_config

pytestmark = pytest.mark.integration

TONES = {"north": [440.0, 1000.0, 1700.0], "south": [620.0, 1300.0, 2300.0]}


@pytest.fixture
async def server() -> AsyncIterator[BridgeServer]:
    config = loopback_config(
        media_workers=2,
        rtp={"shared_port": True},
        room=(RoomDefinition("east", access="room", code="4711"),),
    )
    running = await BridgeServer(config).start()
    try:
        yield running
    finally:
        await running.stop()


def leg_of(server: BridgeServer, room: str, user: str):  # type: ignore[no-untyped-def]
    assert server.core is not None
    return next(m for m in server.core.members(room) if m.caller == user)


def assert_hears(phone: Phone, mates: list[float], others: list[float]) -> None:
    now = asyncio.get_running_loop().time()
    audio = phone.audio(now - 1.5, now)
    assert audio.size >= 0.8 * 8000 * 1.5, f"{phone.user} heard {audio.size} samples"
    levels = tone_levels(audio, [*mates, *others])
    for tone in mates:
        assert levels[tone] > -30, (phone.user, tone, levels)
    for tone in others:
        assert levels[tone] < -50, (phone.user, tone, levels)


async def test_rooms_share_their_workers_port_and_mix(server: BridgeServer) -> None:
    media = server.media
    assert isinstance(media, WorkerMedia) and len(set(media.shared_ports)) == 2
    port = server.transports.udp_port
    phones = {
        room: [
            Phone("127.0.0.1", port, room, tone_hz=tone, user=f"{room}{int(tone)}")
            for tone in tones
        ]
        for room, tones in TONES.items()
    }
    everyone = [p for room in phones.values() for p in room]
    try:
        for phone in everyone:
            assert await phone.call() == 200
        workers = {room: media.room_workers[room] for room in TONES}
        assert set(workers.values()) == {0, 1}  # one room per worker
        for room, members in phones.items():
            shared = media.shared_ports[workers[room]]
            for phone in members:
                assert leg_of(server, room, phone.user).port == shared
                assert phone.session is not None and phone.session.remote_port == shared
        await asyncio.sleep(1.8)
        for room, members in phones.items():
            other_room = [t for r, ts in TONES.items() if r != room for t in ts]
            for phone in members:
                mates = [t for t in TONES[room] if t != phone.tone_hz]
                assert_hears(phone, mates, [phone.tone_hz, *other_room])  # type: ignore[list-item]
                assert phone.sources == {("127.0.0.1", media.shared_ports[workers[room]])}
        # the workers' counters come back to the API, per leg
        north = leg_of(server, "north", "north440")
        await eventually(lambda: media.stats(north.key).counters.packets_in > 50, timeout=3)  # type: ignore[union-attr]
        # (`totals().unmatched` may count a phone's early RTP, sent before its leg started)
    finally:
        for phone in everyone:
            await phone.hangup()
    await eventually(lambda: not media.room_workers and not media.shared_reserved, timeout=3)


async def test_a_code_entry_caller_keeps_its_own_port_and_joins_a_shared_room(
    server: BridgeServer,
) -> None:
    media = server.media
    assert isinstance(media, WorkerMedia)
    port = server.transports.udp_port
    host = Phone("127.0.0.1", port, "east", tone_hz=440.0, user="host")
    guest = Phone("127.0.0.1", port, "conference", tone_hz=1000.0, user="guest")
    try:
        assert await host.call() == 200  # dialled by name, but asked the room's code
        assert await guest.call() == 200  # the IVR: which room is not known yet
        legs = {leg.caller: leg for leg in server.core.legs.values()}  # type: ignore[union-attr]
        assert legs["host"].port in media.shared_ports
        guest_port = guest.session.remote_port  # type: ignore[union-attr]
        assert guest_port not in media.shared_ports
        host.send_rfc4733("4711#")
        guest.send_rfc4733("4711#")
        await eventually(lambda: len(server.core.members("east")) == 2, timeout=5)  # type: ignore[union-attr]
        await asyncio.sleep(1.8)
        assert_hears(host, [1000.0], [440.0])
        assert_hears(guest, [440.0], [1000.0])
        assert {s[1] for s in guest.sources} == {guest_port}  # symmetric RTP, its own port
    finally:
        await host.hangup()
        await guest.hangup()
