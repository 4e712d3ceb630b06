"""Check 5 of the dial-in issue: a real softphone joins a room, and audio flows both ways.

baresip (Debian's 1.0) dials the room and sends a 1700 Hz sine; SIPp streams 1000 Hz from a raw
mu-law file; a scripted `Phone` sends 440 Hz and records. baresip's recording of what it decoded
must hold the other two tones and not its own, and the Phone must hear baresip's and SIPp's.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import numpy as np
import pytest

from bridge.media.g711 import ulaw_encode
from bridge.media.tones import sine, tone_levels
from bridge.server import BridgeServer
from bridge.tools.phone import Phone
from tests.integration.baresip import Baresip
from tests.integration.harness import LOOPBACK, SCENARIOS, SippResult, run_sipp

pytestmark = pytest.mark.integration

RATE = 8000
BARESIP_HZ = 1700  # ausine's sine reads about -4.7 dBFS (amplitude ~19200) after G.711
SIPP_HZ = 1000
PHONE_HZ = 440
TONES = [float(PHONE_HZ), float(SIPP_HZ), float(BARESIP_HZ)]
HEARD_DB = -35.0  # every tone here reads -15 dBFS or louder where it should be heard
ABSENT_DB = -50.0  # G.711 noise of the other tones reads about -70 dBFS at these frequencies
SIPP_STAYS_MS = 4500  # SIPp's pause between ACK and BYE
BOTH_IN_ROOM_S = 3.0  # how long all three talk before baresip hangs up


async def members(bridge: BridgeServer, room: str, count: int, timeout: float = 10.0) -> None:
    """Wait until `room` has exactly `count` participants."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if len(bridge.control.participants(room)) == count:
            return
        assert loop.time() < deadline, f"{room} never reached {count} participants"
        await asyncio.sleep(0.02)


def callers(bridge: BridgeServer, room: str) -> set[str]:
    return {p.caller for p in bridge.control.participants(room)}


def write_tone_file(path: Path, freq_hz: float) -> None:
    """One second of raw mu-law: a whole number of cycles, so SIPp's loop has no click."""
    path.write_bytes(ulaw_encode(sine(freq_hz, 1.0, amplitude=6000, rate=RATE)))


def levels(samples: np.ndarray, who: str) -> dict[float, float]:
    assert len(samples) >= RATE, f"{who} heard only {len(samples)} samples"
    return {k: round(v, 1) for k, v in tone_levels(samples, TONES, RATE).items()}


async def test_baresip_joins_a_room_with_sipp_and_a_phone(
    bridge: BridgeServer, tmp_path: Path
) -> None:
    loop = asyncio.get_running_loop()
    room, port = "softroom", bridge.transports.udp_port
    write_tone_file(tmp_path / "tone.ulaw", SIPP_HZ)
    phone = Phone(LOOPBACK, port, room, tone_hz=float(PHONE_HZ), user=f"tone{PHONE_HZ}")
    softphone = Baresip(tmp_path, tone_hz=BARESIP_HZ)
    sipp: asyncio.Task[SippResult] | None = None
    try:
        assert await phone.call() == 200
        await softphone.start()
        await softphone.dial(f"sip:{room}@{LOOPBACK}:{port}")
        await members(bridge, room, 2)
        scenario = ["-sf", str(SCENARIOS / "uac_tone.xml"), "-s", room, "-d", str(SIPP_STAYS_MS)]
        sipp = asyncio.create_task(
            run_sipp(port, [*scenario, "-m", "1", "-l", "1"], tmp_path, timeout=30)
        )
        await members(bridge, room, 3)
        joined = loop.time()
        await asyncio.sleep(BOTH_IN_ROOM_S)
        assert callers(bridge, room) == {"softphone", "sipp", f"tone{PHONE_HZ}"}

        heard = levels(phone.audio(joined + 0.5, loop.time()), "phone")
        assert heard[BARESIP_HZ] > HEARD_DB, ("phone should hear baresip", heard)
        assert heard[SIPP_HZ] > HEARD_DB, ("phone should hear SIPp", heard)
        assert heard[PHONE_HZ] < ABSENT_DB, ("phone hears itself", heard)

        await softphone.hangup()
        await members(bridge, room, 2)
        await softphone.stop()
        assert softphone.process is not None and softphone.process.returncode == 0
        # The dump ends at the hang-up: its last seconds are while all three were talking. Skip
        # the jitter buffer's tail and stay well after SIPp's first packets.
        recording = softphone.heard()
        window = recording[-int(2.0 * RATE) : -int(0.3 * RATE)]
        got = levels(window, "baresip")
        assert got[SIPP_HZ] > HEARD_DB, ("baresip should hear SIPp", got, softphone.output)
        assert got[PHONE_HZ] > HEARD_DB, ("baresip should hear the phone", got)
        assert got[BARESIP_HZ] < ABSENT_DB, ("baresip hears itself", got)
        sent = levels(softphone.sent()[-RATE:], "baresip's own source")
        assert sent[BARESIP_HZ] > HEARD_DB, sent

        result = await sipp
        sipp = None
        assert (result.successful, result.failed) == (1, 0), result.stderr + result.stdout
        await members(bridge, room, 1)
    finally:
        await softphone.stop()
        await phone.hangup()
        if sipp is not None:  # let SIPp finish its scenario (or time out) rather than orphan it
            with contextlib.suppress(Exception):
                await sipp
    assert bridge.core is not None and room not in bridge.core.rooms
