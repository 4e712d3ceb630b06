"""Check 1 of the wideband issue: real softphones with wideband codecs in one room.

Debian's baresip with G.722 (sends 2500 + 5000 Hz) and linphone's console client with Opus
(1800 + 6500 Hz), both from WAV files, join a room with SIPp streaming PCMU (1000 Hz). The room
mixes at 48 kHz. Each must hear the two others and not itself (FFT); the tones above 4 kHz must
reach the wideband listeners (G.722 hears Opus' 6500 Hz, Opus hears G.722's 5000 Hz). What SIPp
hears is read off `lo` (PCMU: only the tones below 4 kHz can reach it).
"""

from __future__ import annotations

import asyncio
import contextlib
import wave
from pathlib import Path

import numpy as np
import pytest

from bridge.media.g711 import ulaw_decode
from bridge.media.tones import sine, tone_levels
from bridge.server import BridgeServer
from bridge.tools.ports import free_port
from tests.integration.baresip import Baresip
from tests.integration.harness import LOOPBACK, SCENARIOS, SippResult, run_sipp
from tests.integration.linphone import Linphone
from tests.integration.test_dialout import tap
from tests.integration.test_softphone import callers, members, write_tone_file

pytestmark = pytest.mark.integration

G722_LOW, G722_HIGH = 2500.0, 5000.0
OPUS_LOW, OPUS_HIGH = 1800.0, 6500.0
SIPP_HZ = 1000.0
TONES = [G722_LOW, G722_HIGH, OPUS_LOW, OPUS_HIGH, SIPP_HZ]
HEARD_DB = -40.0
ABSENT_DB = -55.0
TOGETHER_S = 3.0


def write_source(path: Path, freqs: tuple[float, float], seconds: int = 60) -> Path:
    """A 48 kHz stereo WAV of two tones (baresip's aufile source; it hangs up when it ends)."""
    rate = 48000
    mono = sum(sine(f, float(seconds), amplitude=7000, rate=rate).astype(np.int32) for f in freqs)
    stereo = np.repeat(np.asarray(mono, np.int16)[:, None], 2, axis=1)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(stereo.astype("<i2").tobytes())
    return path


def levels(samples: np.ndarray, rate: int, who: str) -> dict[float, float]:
    assert len(samples) >= rate, f"{who} heard only {len(samples)} samples"
    return {k: round(v, 1) for k, v in tone_levels(samples, TONES, rate).items()}


def last_seconds(recording: np.ndarray, rate: int) -> np.ndarray:
    """What a softphone decoded while all three were in the room (its recording ends at the
    hang-up; the jitter buffer's tail skipped)."""
    return recording[-int(2.0 * rate) : -int(0.3 * rate)]


def check(got: dict[float, float], heard: list[float], absent: list[float], who: str) -> None:
    for freq in heard:
        assert got[freq] > HEARD_DB, (f"{who} should hear {freq} Hz", got)
    for freq in absent:
        assert got[freq] < ABSENT_DB, (f"{who} should not hear {freq} Hz", got)


async def test_baresip_g722_and_linphone_opus_with_a_pcmu_sipp_caller(
    bridge: BridgeServer, tmp_path: Path
) -> None:
    room, port = "wideroom", bridge.transports.udp_port
    write_tone_file(tmp_path / "tone.ulaw", SIPP_HZ)
    g722 = Baresip(tmp_path / "g722", tone_hz=440, user="g722phone", codecs="G722/16000/1",
                   source_file=write_source(tmp_path / "g722.wav", (G722_LOW, G722_HIGH)))
    opus = Linphone(tmp_path / "opus", user="opusphone",
                    source_file=write_source(tmp_path / "opus.wav", (OPUS_LOW, OPUS_HIGH)))
    sipp_media = free_port()
    heard_by_sipp = tap(sipp_media)
    sipp: asyncio.Task[SippResult] | None = None
    try:
        for phone in (g722, opus):
            await phone.start()
            await phone.dial(f"sip:{room}@{LOOPBACK}:{port}")
        await members(bridge, room, 2)
        codecs = {p.caller: p.codec for p in bridge.control.participants(room)}
        assert codecs == {"g722phone": "G722", "opusphone": "OPUS"}, (codecs, opus.output)
        scenario = ["-sf", str(SCENARIOS / "uac_tone.xml"), "-s", room, "-d", "4500",
                    "-mp", str(sipp_media)]
        sipp = asyncio.create_task(
            run_sipp(port, [*scenario, "-m", "1", "-l", "1"], tmp_path, timeout=30)
        )
        await members(bridge, room, 3)
        assert callers(bridge, room) == {"g722phone", "opusphone", "sipp"}
        heard_by_sipp.payloads.clear()
        await asyncio.sleep(TOGETHER_S)
        sipp_heard = ulaw_decode(b"".join(heard_by_sipp.payloads[25:]))
        for phone in (g722, opus):
            await phone.hangup()
            await phone.stop()

        got = levels(last_seconds(g722.heard(), g722.rate), g722.rate, "baresip G.722")
        check(got, [SIPP_HZ, OPUS_LOW, OPUS_HIGH], [G722_LOW, G722_HIGH], "G.722 phone")
        heard, rate = opus.heard()
        assert rate == 48000, rate
        got = levels(last_seconds(heard, rate), rate, "linphone Opus")
        check(got, [SIPP_HZ, G722_LOW, G722_HIGH], [OPUS_LOW, OPUS_HIGH], "Opus phone")
        got = levels(sipp_heard, 8000, "SIPp")
        check(got, [G722_LOW, OPUS_LOW], [SIPP_HZ], "SIPp")

        result = await sipp
        sipp = None
        assert (result.successful, result.failed) == (1, 0), result.stderr + result.stdout
    finally:
        heard_by_sipp.close()
        for phone in (g722, opus):
            await phone.stop()
        if sipp is not None:
            with contextlib.suppress(Exception):
                await sipp
