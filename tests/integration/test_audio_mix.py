"""Check 3 of the dial-in issue: mix-minus measured by FFT on what real RTP peers receive.

Each phone streams its own tone into the bridge over real UDP sockets and records what comes back;
each must hear the others' tones and not its own, a muted phone is no longer heard, and two rooms
never leak into each other.
"""

from __future__ import annotations

import asyncio

import pytest

from bridge.media.tones import tone_levels
from bridge.server import BridgeServer
from bridge.tools.phone import Phone

pytestmark = pytest.mark.integration

HEARD_DB = -30.0  # a tone of amplitude 6000 reads about -15 dBFS after G.711 and mixing
ABSENT_DB = -55.0  # G.711 quantisation noise of the other tones stays well under this


def phones_for(
    server: BridgeServer, room: str, tones: list[float], codecs: list[str] | None = None
) -> list[Phone]:
    codecs = codecs or ["PCMU"] * len(tones)
    return [
        Phone(
            "127.0.0.1",
            server.transports.udp_port,
            room,
            tone_hz=tone,
            codec=codec,
            user=f"tone{int(tone)}",
        )
        for tone, codec in zip(tones, codecs, strict=True)
    ]


def levels(phone: Phone, since: float, until: float, tones: list[float]) -> dict[float, float]:
    audio = phone.audio(since, until)
    assert len(audio) >= 8000, f"{phone.user} heard only {len(audio)} samples"
    return tone_levels(audio, tones)


async def test_each_hears_the_others_not_itself_and_mute_silences(bridge: BridgeServer) -> None:
    loop = asyncio.get_running_loop()
    tones = [440.0, 1000.0, 1700.0]
    phones = phones_for(bridge, "mix", tones, ["PCMU", "PCMA", "PCMU"])
    try:
        for phone in phones:
            assert await phone.call() == 200
        await asyncio.sleep(2.5)
        now = loop.time()
        for phone in phones:
            heard = levels(phone, now - 1.5, now, tones)
            for tone in tones:
                if tone == phone.tone_hz:
                    assert heard[tone] < ABSENT_DB, (phone.user, heard)
                else:
                    assert heard[tone] > HEARD_DB, (phone.user, heard)

        (loud,) = [p for p in bridge.control.participants("mix") if p.caller == "tone1000"]
        assert bridge.control.set_muted("mix", loud.id, True, by="test")
        muted_at = loop.time()
        await asyncio.sleep(2.0)
        now = loop.time()
        for phone in phones:
            heard = levels(phone, muted_at + 0.3, now, tones)
            if phone.tone_hz == 1000.0:
                assert heard[440.0] > HEARD_DB and heard[1700.0] > HEARD_DB, heard
            else:
                other = 1700.0 if phone.tone_hz == 440.0 else 440.0
                assert heard[1000.0] < ABSENT_DB, (phone.user, heard)
                assert heard[other] > HEARD_DB, (phone.user, heard)
    finally:
        for phone in phones:
            await phone.hangup()
    assert bridge.core is not None and "mix" not in bridge.core.rooms


async def test_two_rooms_do_not_leak(bridge: BridgeServer) -> None:
    loop = asyncio.get_running_loop()
    room_a = phones_for(bridge, "alpha", [440.0, 1000.0])
    room_b = phones_for(bridge, "beta", [1700.0, 2500.0])
    everything = [440.0, 1000.0, 1700.0, 2500.0]
    try:
        for phone in room_a + room_b:
            assert await phone.call() == 200
        await asyncio.sleep(2.5)
        now = loop.time()
        for members in (room_a, room_b):
            room_tones = {p.tone_hz for p in members}
            for phone in members:
                heard = levels(phone, now - 1.5, now, everything)
                for tone in everything:
                    if tone in room_tones and tone != phone.tone_hz:
                        assert heard[tone] > HEARD_DB, (phone.user, heard)
                    else:
                        assert heard[tone] < ABSENT_DB, (phone.user, heard)
    finally:
        for phone in room_a + room_b:
            await phone.hangup()
