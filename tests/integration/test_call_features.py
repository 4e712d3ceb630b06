"""Call behaviour beyond the basic dial-in: hold by re-INVITE, late offer, RTP timeout, OPTIONS."""

from __future__ import annotations

import asyncio

import pytest

from bridge.media.tones import tone_levels
from bridge.server import BridgeServer
from bridge.tools.phone import Phone
from tests.integration.harness import loopback_config

pytestmark = pytest.mark.integration


def phone(server: BridgeServer, room: str, tone: float, **options: object) -> Phone:
    return Phone(
        "127.0.0.1", server.transports.udp_port, room, tone_hz=tone, user=f"t{int(tone)}", **options
    )  # type: ignore[arg-type]


async def test_hold_and_resume_by_reinvite(bridge: BridgeServer) -> None:
    loop = asyncio.get_running_loop()
    holder, other = phone(bridge, "hold", 440.0), phone(bridge, "hold", 1000.0)
    try:
        assert await holder.call() == 200
        assert await other.call() == 200
        await asyncio.sleep(1.0)

        assert await holder.reinvite("sendonly") == 200
        held_at = loop.time()
        packets_before = holder.received_packets
        await asyncio.sleep(1.0)
        # on hold: the holder is not mixed and is sent nothing
        assert tone_levels(other.audio(held_at + 0.2), [440.0])[440.0] < -55
        assert holder.received_packets - packets_before <= 2  # at most what was in flight
        (held,) = [p for p in bridge.control.participants("hold") if p.caller == "t440"]
        assert held.on_hold

        assert await holder.reinvite("sendrecv") == 200
        resumed_at = loop.time()
        await asyncio.sleep(1.0)
        assert tone_levels(other.audio(resumed_at + 0.2), [440.0])[440.0] > -30
        assert tone_levels(holder.audio(resumed_at + 0.2), [1000.0])[1000.0] > -30
        assert bridge.control.find_participant("hold", held.id).on_hold is False  # type: ignore[union-attr]

        assert await holder.reinvite("inactive") == 200
        assert held.on_hold
    finally:
        await holder.hangup()
        await other.hangup()


async def test_invite_without_sdp_takes_the_answer_from_the_ack(bridge: BridgeServer) -> None:
    loop = asyncio.get_running_loop()
    late, early = phone(bridge, "late", 440.0, late_offer=True), phone(bridge, "late", 1700.0)
    try:
        assert await late.call() == 200
        assert await early.call() == 200
        start = loop.time()
        await asyncio.sleep(1.5)
        assert tone_levels(early.audio(start + 0.3), [440.0])[440.0] > -30
        assert tone_levels(late.audio(start + 0.3), [1700.0])[1700.0] > -30
    finally:
        await late.hangup()
        await early.hangup()


async def test_silent_call_is_hung_up_with_bye() -> None:
    server = await BridgeServer(loopback_config(rtp={"timeout_s": 1})).start()
    try:
        quiet, talker = phone(server, "quiet", 440.0), phone(server, "quiet", 1000.0)
        assert await quiet.call() == 200
        assert await talker.call() == 200
        await quiet.stop_streaming()
        for _ in range(50):
            if quiet.ended_by_bridge:
                break
            await asyncio.sleep(0.1)
        assert quiet.ended_by_bridge
        assert not talker.ended_by_bridge  # the other call goes on
        assert [p.caller for p in server.control.participants("quiet")] == ["t1000"]
        await quiet.close()
        await talker.hangup()
    finally:
        await server.stop()
