"""Issue 3 end to end: keys by RFC 4733, INFO and in-band reach the event bus exactly once; the
room-code IVR and caller lists admit or refuse; the keypad mutes; bad DTMF input is harmless."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from bridge.config import RoomDefinition
from bridge.events import BridgeEvent, DtmfReceived
from bridge.media.tones import tone_levels
from bridge.server import BridgeServer
from bridge.tools.phone import Phone
from tests.integration.harness import SCENARIOS, loopback_config, run_sipp

pytestmark = pytest.mark.integration

ROOMS = (
    RoomDefinition("secret", access="room", code="4711"),
    RoomDefinition("vip", access="caller", callers=("alice", "+15551234")),
    RoomDefinition("mixed", access="room+caller", code="99", callers=("bob",)),
)


class Recorder:
    def __init__(self, server: BridgeServer) -> None:
        self.events: list[BridgeEvent] = []
        server.events.subscribe(self.events.append)

    def digits(self, participant: str | None = None) -> list[tuple[str, str]]:
        return [
            (e.digit, e.method)
            for e in self.events
            if isinstance(e, DtmfReceived) and (participant is None or e.participant == participant)
        ]


@pytest.fixture
async def ivr_bridge() -> AsyncIterator[BridgeServer]:
    server = await BridgeServer(loopback_config(room=ROOMS, rooms={"code_timeout_s": 5})).start()
    try:
        yield server
    finally:
        await server.stop()


def dial(
    server: BridgeServer, room: str, user: str, tone: float | None = None, **options: object
) -> Phone:
    return Phone("127.0.0.1", server.transports.udp_port, room, tone_hz=tone, user=user, **options)  # type: ignore[arg-type]


def keypad_off(server: BridgeServer, room: str) -> None:
    """Digits still become events, but trigger no menu action (8 would leave, 1 mute)."""
    for participant in server.control.participants(room):
        assert server.control.set_option(room, participant.id, "dtmf_enabled", False)


def members(server: BridgeServer, room: str) -> list[str]:
    return [p.caller for p in server.control.participants(room)]


async def wait_for(condition: Callable[[], object], timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def test_rfc4733_digits_each_detected_once(bridge: BridgeServer) -> None:
    recorder = Recorder(bridge)
    phone = dial(bridge, "keys", "presser", 440.0)
    try:
        assert await phone.call() == 200
        keypad_off(bridge, "keys")
        phone.send_rfc4733("1234567890*#ABCD")
        await wait_for(lambda: len(recorder.digits()) >= 16)
        await asyncio.sleep(0.5)  # any duplicate from the redundant end packets would be here
        assert recorder.digits() == [(d, "rfc4733") for d in "1234567890*#ABCD"]
        assert members(bridge, "keys") == ["presser"]  # 8 did not make it leave
        assert not bridge.control.participants("keys")[0].muted  # nor 1 mute it
    finally:
        await phone.hangup()


async def test_info_digits_in_order_and_bad_info_gets_400(bridge: BridgeServer) -> None:
    recorder = Recorder(bridge)
    phone = dial(bridge, "info", "infoer", 440.0)
    try:
        assert await phone.call() == 200
        for digit in "90#*":
            assert await phone.send_info(digit) == 200
        assert await phone.send_info("", body=b"Signal=Q\r\n") == 400
        assert await phone.send_info("", body=b"no equals sign") == 400
        assert await phone.send_info("", body=b"Signal=1", content_type="text/plain") == 415
        await asyncio.sleep(0.1)
        assert recorder.digits() == [(d, "info") for d in "90#*"]
    finally:
        await phone.hangup()


@pytest.mark.parametrize(("level", "twist"), [(-10.0, 4.0), (-25.0, -4.0), (-25.0, 4.0)])
async def test_inband_digits_through_pcmu(bridge: BridgeServer, level: float, twist: float) -> None:
    recorder = Recorder(bridge)
    phone = dial(bridge, "inband", "tones", None, telephone_event=False)
    try:
        assert await phone.call() == 200
        keypad_off(bridge, "inband")
        phone.send_inband("147*2580369#ABCD", level_dbm0=level, on_ms=50, off_ms=50, twist_db=twist)
        await wait_for(lambda: len(recorder.digits()) >= 16)
        await asyncio.sleep(0.3)
        assert recorder.digits() == [(d, "inband") for d in "147*2580369#ABCD"]
    finally:
        await phone.hangup()


async def test_room_code_admits_and_three_wrong_codes_hang_up(ivr_bridge: BridgeServer) -> None:
    loop = asyncio.get_running_loop()
    host = dial(ivr_bridge, "secret", "host", 1000.0)
    guest = dial(ivr_bridge, "secret", "guest", 440.0)
    wrong = dial(ivr_bridge, "secret", "wrong", 700.0)
    try:
        assert await host.call() == 200
        await wait_for(
            lambda: ivr_bridge.core is not None
            and any(leg.media and leg.room is None for leg in ivr_bridge.core.legs.values())
        )
        host.send_rfc4733("4711#")
        await wait_for(lambda: members(ivr_bridge, "secret") == ["host"])

        assert await guest.call() == 200
        await asyncio.sleep(0.5)
        assert members(ivr_bridge, "secret") == ["host"]  # waiting for its code
        guest.send_rfc4733("4711#")
        await wait_for(lambda: members(ivr_bridge, "secret") == ["host", "guest"])
        joined = loop.time()
        await asyncio.sleep(1.2)
        assert tone_levels(guest.audio(joined + 0.3), [1000.0])[1000.0] > -30  # hears the room
        assert tone_levels(host.audio(joined + 0.3), [440.0])[440.0] > -30

        assert await wrong.call() == 200
        wrong.send_rfc4733("1#2#3#", gap_ms=200)
        await wait_for(lambda: wrong.ended_by_bridge, timeout=15)
        assert members(ivr_bridge, "secret") == ["host", "guest"]
    finally:
        for phone in (host, guest, wrong):
            await phone.hangup()


async def test_caller_lists(ivr_bridge: BridgeServer) -> None:
    alice = dial(ivr_bridge, "vip", "alice", 440.0)
    mallory = dial(ivr_bridge, "vip", "mallory", 1000.0)
    bob = dial(ivr_bridge, "mixed", "bob", 440.0)
    carol = dial(ivr_bridge, "mixed", "carol", 1000.0)
    try:
        assert await alice.call() == 200
        await wait_for(lambda: members(ivr_bridge, "vip") == ["alice"])
        assert await mallory.call() == 200  # answered to hear why, then hung up
        await wait_for(lambda: mallory.ended_by_bridge, timeout=10)
        assert members(ivr_bridge, "vip") == ["alice"]

        assert await bob.call() == 200  # listed: joins without a code
        await wait_for(lambda: members(ivr_bridge, "mixed") == ["bob"])
        assert await carol.call() == 200  # not listed: must enter the room's code
        await asyncio.sleep(0.5)
        assert members(ivr_bridge, "mixed") == ["bob"]
        carol.send_rfc4733("99#")
        await wait_for(lambda: members(ivr_bridge, "mixed") == ["bob", "carol"])
    finally:
        for phone in (alice, mallory, bob, carol):
            await phone.hangup()


async def test_dial_in_number_asks_for_the_code_that_selects_the_room(
    ivr_bridge: BridgeServer,
) -> None:
    caller = dial(ivr_bridge, "conference", "dialer", 440.0)
    try:
        assert await caller.call() == 200
        caller.send_rfc4733("4711#")
        await wait_for(lambda: members(ivr_bridge, "secret") == ["dialer"])
    finally:
        await caller.hangup()


async def test_keypad_mute_toggle_removes_the_tone(bridge: BridgeServer) -> None:
    loop = asyncio.get_running_loop()
    talker = dial(bridge, "pad", "talker", 1000.0)
    listener = dial(bridge, "pad", "listener", 440.0)
    try:
        assert await talker.call() == 200
        assert await listener.call() == 200
        await asyncio.sleep(0.8)
        talker.send_rfc4733("1")
        await wait_for(
            lambda: (
                members(bridge, "pad")
                and all(
                    p.muted for p in bridge.control.participants("pad") if p.caller == "talker"
                )
            )
        )
        muted = loop.time()
        await asyncio.sleep(1.2)
        assert tone_levels(listener.audio(muted + 0.2), [1000.0])[1000.0] < -55
        talker.send_rfc4733("1")
        await wait_for(
            lambda: (
                not any(p.muted for p in bridge.control.participants("pad"))
            )
        )
        unmuted = loop.time()
        await asyncio.sleep(1.2)
        assert tone_levels(listener.audio(unmuted + 0.2), [1000.0])[1000.0] > -30
    finally:
        await talker.hangup()
        await listener.hangup()


async def test_bad_telephone_events_are_ignored(bridge: BridgeServer) -> None:
    recorder = Recorder(bridge)
    phone = dial(bridge, "badkeys", "fuzzer", 440.0)
    other = dial(bridge, "badkeys", "other", 1000.0)
    try:
        assert await phone.call() == 200
        assert await other.call() == 200
        assert bridge.core is not None
        (target,) = [leg for leg in bridge.core.members("badkeys") if leg.caller == "fuzzer"]
        port = target.port

        def event_packet(sequence: int, timestamp: int, payload: bytes) -> bytes:
            return struct.pack("!BBHII", 0x80, 101, sequence, timestamp, 777) + payload

        bad = [
            event_packet(1, 1000, bytes([200, 0x0A, 0, 160])),  # unknown event code
            event_packet(2, 2000, bytes([5])),  # truncated payload
            event_packet(3, 3000, b""),  # no payload at all
            event_packet(4, 4000, bytes([3, 0x8A, 3, 32])),  # an end without a start
            event_packet(5, 4000, bytes([3, 0x8A, 3, 32])),
        ]
        for packet in bad:
            phone.rtp.sendto(packet, ("127.0.0.1", port))
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.sleep(1.0)
        assert recorder.digits() == []
        assert tone_levels(other.audio(start + 0.2), [440.0])[440.0] > -30  # call carries on
    finally:
        await phone.hangup()
        await other.hangup()


async def test_sipp_plays_the_debian_rfc4733_pcaps(bridge: BridgeServer, tmp_path: Path) -> None:
    recorder = Recorder(bridge)
    result = await run_sipp(
        bridge.transports.udp_port,
        ["-sf", str(SCENARIOS / "uac_rfc4733_pcap.xml"), "-s", "pcaps", "-m", "1"],
        tmp_path,
    )
    assert (result.successful, result.failed) == (1, 0), result.stderr
    assert recorder.digits() == [(d, "rfc4733") for d in "1234#"]


async def test_sipp_info_digits_in_order(bridge: BridgeServer, tmp_path: Path) -> None:
    recorder = Recorder(bridge)
    result = await run_sipp(
        bridge.transports.udp_port,
        ["-sf", str(SCENARIOS / "uac_info_dtmf.xml"), "-s", "infos", "-m", "1"],
        tmp_path,
    )
    assert (result.successful, result.failed) == (1, 0), result.stderr
    assert recorder.digits() == [(d, "info") for d in "1234#"]
