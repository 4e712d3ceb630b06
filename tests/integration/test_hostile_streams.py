"""Check 3 of the capacity issue: a bad or hostile RTP stream cannot hurt anyone else.

Three phones share a room: two witnesses (500 and 1300 Hz) and an attacker (2000 Hz) whose
leg is then abused: RTP from wrong sources, truncated packets, ten times its rate, and a burst
of 1,000 packets at once on its socket. While it lasts and after, each witness must keep
hearing the other (FFT over the attack), no witness may be hung up, and the bridge must
account for what it dropped. The tick's lateness is measured by the benchmarks, not asserted
here (no timed assertions in tests): what is asserted is that every witness kept receiving
its audio throughout.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np
import pytest

from bridge.media.g711 import PCMU
from bridge.media.tones import ToneSource, tone_levels
from bridge.mixing.backend import MediaStats
from bridge.mixing.participant import MediaCounters
from bridge.mixing.workers.backend import WorkerMedia
from bridge.server import BridgeServer
from bridge.tools.phone import Phone
from tests.integration.harness import eventually, loopback_config

pytestmark = pytest.mark.integration

ROOM = "hostile"
ATTACK_SECONDS = 1.5


@dataclass
class Room:
    server: BridgeServer
    witnesses: list[Phone]
    attacker: Phone

    @property
    def attacker_port(self) -> int:
        assert self.server.core is not None
        leg = next(m for m in self.server.core.members(ROOM) if m.caller == "attacker")
        return leg.port

    def stats(self) -> MediaStats:
        """The attacker's leg's figures (a worker's are at most a second old)."""
        assert self.server.core is not None and self.server.media is not None
        leg = next(m for m in self.server.core.members(ROOM) if m.caller == "attacker")
        stats = self.server.media.stats(leg.key)
        assert stats is not None
        return stats

    def counters(self) -> MediaCounters:
        return self.stats().counters

    def send_as_attacker(self, data: bytes) -> None:
        """From the attacker's own (latched) RTP socket."""
        self.attacker.rtp.sendto(data, ("127.0.0.1", self.attacker_port))


@pytest.fixture(params=["own", "shared"])
async def room(request: pytest.FixtureRequest) -> AsyncIterator[Room]:
    """Each test twice: on per-call sockets (in-process or on the suite's workers), and on two
    workers' shared RTP ports, where the attacker's abuse arrives on everyone's socket."""
    shared = request.param == "shared"
    if shared:
        config = loopback_config(media_workers=2, rtp={"shared_port": True})
    else:
        config = loopback_config()
    server = await BridgeServer(config).start()
    try:
        async for made in _room(server):
            if shared:
                assert isinstance(server.media, WorkerMedia)
                assert made.attacker_port in server.media.shared_ports
            yield made
    finally:
        await server.stop()


async def _room(bridge: BridgeServer) -> AsyncIterator[Room]:
    port = bridge.transports.udp_port
    witnesses = [
        Phone("127.0.0.1", port, ROOM, tone_hz=tone, user=f"w{int(tone)}")
        for tone in (500.0, 1300.0)
    ]
    attacker = Phone("127.0.0.1", port, ROOM, tone_hz=2000.0, user="attacker")
    for phone in (*witnesses, attacker):
        assert await phone.call() == 200
    await asyncio.sleep(0.5)  # everyone streaming, the attacker's source latched
    yield Room(bridge, witnesses, attacker)
    for phone in (*witnesses, attacker):
        await phone.hangup()


async def assert_witnesses_heard_each_other(room: Room, start: float, end: float) -> None:
    """Over [start, end]: each witness heard the other loud and clear, in every 300 ms."""
    a, b = room.witnesses
    assert not a.ended_by_bridge and not b.ended_by_bridge
    for listener, tone in ((a, 1300.0), (b, 500.0)):
        audio = listener.audio(start, end)
        assert audio.size >= 0.8 * (end - start) * 8000, "a witness stopped receiving"
        assert tone_levels(audio, [tone])[tone] > -30
        for piece in np.array_split(audio, max(1, int((end - start) / 0.3))):
            assert tone_levels(piece, [tone])[tone] > -35, "a gap in a witness's audio"


def rtp(sequence: int, timestamp: int, ssrc: int, payload: bytes) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, sequence & 0xFFFF, timestamp, ssrc) + payload


async def attack(room: Room, step) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Run `step(n)` every 20 ms for ATTACK_SECONDS; the span to check the witnesses over."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    n = 0
    while loop.time() - start < ATTACK_SECONDS:
        step(n)
        n += 1
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)  # and a little after
    return start + 0.1, loop.time() - 0.1


def dropped_sources(room: Room) -> int:
    """Datagrams dropped for their source: on the leg's own socket, or on a shared port."""
    assert room.server.media is not None
    return room.counters().wrong_source + room.server.media.totals().unmatched


async def test_rtp_from_wrong_sources_is_dropped(room: Room) -> None:
    before = dropped_sources(room)
    intruders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
    intruders[0].bind(("127.0.0.2", 0))  # another host
    intruders[1].bind(("127.0.0.1", 0))  # the right host, another port
    intruders[2].bind(("127.0.0.3", 0))
    loud = PCMU.encode(ToneSource(3100.0, 30000).next_frame(160))
    port = room.attacker_port

    sent = 0

    def step(n: int) -> None:
        nonlocal sent
        for k, intruder in enumerate(intruders):
            for m in range(5):
                intruder.sendto(rtp(n * 5 + m, 160 * n, 0xBAD + k, loud), ("127.0.0.1", port))
                sent += 1

    try:
        start, end = await attack(room, step)
    finally:
        for intruder in intruders:
            intruder.close()
    await assert_witnesses_heard_each_other(room, start, end)
    for witness in room.witnesses:  # the intruders' 3100 Hz was never mixed
        assert tone_levels(witness.audio(start, end), [3100.0])[3100.0] < -50
    # (a loaded machine runs fewer than 75 steps in the attack: count what was sent)
    await eventually(lambda: dropped_sources(room) - before >= 0.9 * sent, timeout=3)


async def test_truncated_packets_are_dropped(room: Room) -> None:
    before = room.counters().bad_packets
    rng = random.Random(13)
    sent = 0

    def step(n: int) -> None:
        nonlocal sent
        for _ in range(5):
            length = rng.randrange(0, 12)  # shorter than an RTP header
            room.send_as_attacker(rtp(n, 160 * n, 77, b"\xff" * 160)[:length])
            sent += 1

    start, end = await attack(room, step)
    await assert_witnesses_heard_each_other(room, start, end)
    # the attacker's own stream still goes through: the witnesses hear its tone too
    for witness in room.witnesses:
        assert tone_levels(witness.audio(start, end), [2000.0])[2000.0] > -30
    # (an empty datagram may not count: some never reach the handler; the rest are bad)
    await eventually(lambda: room.counters().bad_packets - before >= 0.8 * sent, timeout=3)


async def test_ten_times_the_rate_is_bounded(room: Room) -> None:
    before = room.counters().packets_in
    sequence, timestamp = random.randrange(1 << 16), random.randrange(1 << 31)
    payload = PCMU.encode(ToneSource(2500.0, 20000).next_frame(160))

    def step(n: int) -> None:
        nonlocal sequence, timestamp
        for _ in range(10):
            room.send_as_attacker(rtp(sequence, timestamp, 0x51, payload))
            sequence, timestamp = sequence + 1, timestamp + 160

    start, end = await attack(room, step)
    await assert_witnesses_heard_each_other(room, start, end)
    await eventually(lambda: room.counters().packets_in - before >= 10 * 75, timeout=3)


async def test_a_burst_of_a_thousand_packets_at_once(room: Room) -> None:
    before, trimmed_before = room.counters().packets_in, room.stats().trimmed
    payload = PCMU.encode(ToneSource(2500.0, 20000).next_frame(160))
    burst = [rtp(1000 + i, 160 * i, 0x52, payload) for i in range(1000)]

    def step(n: int) -> None:
        if n == 10:
            for packet in burst:
                room.send_as_attacker(packet)

    start, end = await attack(room, step)
    await assert_witnesses_heard_each_other(room, start, end)
    assert not room.attacker.ended_by_bridge
    # the kernel may drop part of the burst at the socket; what arrived was counted, and the
    # attacker's jitter buffer kept its delay bounded by dropping most of it, and says so
    await eventually(lambda: room.counters().packets_in - before >= 200, timeout=3)
    await eventually(lambda: room.stats().trimmed - trimmed_before >= 100, timeout=3)
