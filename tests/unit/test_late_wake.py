"""A process whose mixing clock wakes late keeps the frames its catch-up ticks play (per-call
RTP sockets: the in-process backend's and the workers' without a shared port).

Woken two ticks late, the event loop reads the three ticks' packets waiting on each call's
socket before the clock runs those three ticks back to back. Pushed as usual, each buffer (2
frames, at most 3) trimmed two of them on the way in and the last two ticks then concealed: two
glitches for every caller on the process per stall. The packets read while the clock is behind
may sit over the bound by the ticks due (`MediaEngine.ticks_behind`,
`Participant.receive_late`), as on a shared port (`tests/unit/test_shared_port.py`).
"""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import uvloop

from bridge.config import RtpConfig
from bridge.mixing.backend import AddParticipant, Controls, Identity, NegotiatedMedia
from bridge.mixing.local import LocalMedia
from bridge.net.mixer_clock import MAX_TICK_BACKLOG, TICK_SECONDS, MixerClock
from bridge.rtp.jitter import JitterBuffer
from tests.unit.test_shared_port import phone as a_phone
from tests.unit.test_shared_port import rtp


def test_ticks_behind_counts_the_ticks_due_beyond_the_next() -> None:
    media = LocalMedia(RtpConfig())
    engine = media.engine
    assert engine.ticks_behind(5.0) == 0  # no tick yet
    engine.tick(100.0, 100.0)
    tick = TICK_SECONDS
    assert engine.late_after == pytest.approx(100.0 + 2 * tick)
    # on time, or the next tick late by less than a tick: it alone runs before the next read
    for now in (100.001, 100.0 + tick, 100.0 + 1.99 * tick):
        assert engine.ticks_behind(now) == 0, now
    assert engine.ticks_behind(100.0 + 2.01 * tick) == 1
    assert engine.ticks_behind(100.0 + 3.01 * tick) == 2
    assert engine.ticks_behind(100.0 + 500 * tick) == MAX_TICK_BACKLOG  # the clock skips on


@pytest.mark.parametrize("behind", [False, True])
async def test_a_late_clock_keeps_the_frames_its_catch_up_ticks_play(behind: bool) -> None:
    media = LocalMedia(RtpConfig(port_min=20000, port_max=20998))
    engine = media.engine
    phone = a_phone()
    try:
        port = media.reserve("leg", "127.0.0.1")
        assert port is not None
        media.apply(
            AddParticipant(
                leg="leg",
                room="r",
                identity=Identity("leg", "caller", "", "127.0.0.1"),
                media=NegotiatedMedia("PCMU", phone.getsockname(), None, False),
                controls=Controls(),
                now=0.0,
            )
        )
        participant = engine.members["leg"]
        jitter = participant.jitter
        assert isinstance(jitter, JitterBuffer) and jitter.max_frames == 3
        loop = asyncio.get_running_loop()
        for sequence in range(2):  # playing, one frame of margin
            phone.sendto(rtp(sequence), ("127.0.0.1", port))
        await asyncio.sleep(0.05)
        assert jitter.stats.received == 2
        # the clock's last tick: three and a half ticks ago (woken late: the next three are
        # due, the first of them two ticks late), or just now
        late_by = 3.5 * TICK_SECONDS if behind else 0.0
        engine.last_deadline = loop.time() - late_by
        engine.late_after = engine.last_deadline + 2 * TICK_SECONDS
        for sequence in range(2, 5):  # the three ticks' packets
            phone.sendto(rtp(sequence), ("127.0.0.1", port))
        await asyncio.sleep(0.02)
        assert jitter.stats.received == 5 and jitter.max_frames == 3  # the bound is back
        played = [jitter.pop() for _ in range(3)]
        if behind:  # read for the three ticks due: nothing trimmed, nothing concealed
            assert jitter.trimmed == 0 and None not in played and jitter.queued == 2
        else:  # on time: the usual bound, two trimmed on the way in
            assert jitter.trimmed == 2
    finally:
        phone.close()
        await media.stop()


class _Reads(asyncio.DatagramProtocol):
    def __init__(self, events: list[str]) -> None:
        self.events = events

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.events.append("read")


async def _stalled_clock(events: list[str]) -> None:
    """The clock ticking on time, then the loop blocked for three and a half ticks while a
    datagram waits on a socket: what runs first once the loop is free."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Reads(events), local_addr=("127.0.0.1", 0)
    )
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    clock = MixerClock()

    def step(now: float, deadline: float) -> None:
        events.append("late tick" if now - deadline >= TICK_SECONDS else "tick")

    ticking = asyncio.create_task(clock.run(step))
    try:
        await asyncio.sleep(0.1)
        events.clear()
        sender.sendto(b"rtp", transport.get_extra_info("sockname"))
        time.sleep(3.5 * TICK_SECONDS)  # the loop stalls
        await asyncio.sleep(0.05)
    finally:
        ticking.cancel()
        sender.close()
        transport.close()


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_woken_late_the_clock_lets_the_loop_read_before_the_ticks_it_missed(
    loop_kind: str,
) -> None:
    events: list[str] = []
    if loop_kind == "uvloop":
        uvloop.run(_stalled_clock(events))
    else:
        asyncio.run(_stalled_clock(events))
    assert "late tick" in events and "read" in events, events
    assert events.index("read") < events.index("late tick"), events


def test_the_stalls_benchmark_runs() -> None:
    """`scripts/bench_stalls.py`'s smoke pass: one short stall, four callers."""
    done = subprocess.run(
        [sys.executable, "scripts/bench_stalls.py", "--callers", "4", "--stalls", "1"],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found = re.search(r"1 stalls of 70 ms, 4 callers: concealed (\d+), trimmed (\d+)", done.stdout)
    assert found, done.stdout
