"""Check 5 and the upload half of check 6 of the wideband issue, and end-on-exit, through the
HTTP API against the running bridge: uploaded announcements (a 44.1 kHz stereo WAV, an MP3)
decoded and resampled by PyAV; one played to one participant is heard by that participant only
(FFT), one played to the room by all; stored at 48 kHz, an announcement reaches a G.722
softphone with its 6 kHz. A non-audio upload is a 400 naming the problem, a 1 GiB
one a 413 answered from its headers, and the calls in the room carry on meanwhile.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from bridge.media.tones import sine, tone_levels
from bridge.tools.phone import Phone
from control.runtime import Runtime
from tests.integration.baresip import Baresip
from tests.integration.harness import LOOPBACK, eventually, loopback_config, with_control
from tests.integration.test_control_api import create, http, token_for

pytestmark = pytest.mark.integration

PHONES = {"p500": 500.0, "p900": 900.0, "p1300": 1300.0}
ANNOUNCED_HZ = 2500.0
HEARD_DB = -35.0
ABSENT_DB = -45.0  # the three tones mixed in G.711 leave -50 dB of products near 2500 Hz


def wav_bytes(freq: float, seconds: float, rate: int = 44100) -> bytes:
    mono = sine(freq, seconds, amplitude=8000, rate=rate)
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(np.repeat(mono[:, None], 2, axis=1).astype("<i2").tobytes())
    return out.getvalue()


def mp3_bytes(freq: float, seconds: float, rate: int = 44100) -> bytes:
    out = io.BytesIO()
    with av.open(out, "w", format="mp3") as container:
        stream = container.add_stream("libmp3lame", rate=rate, layout="mono")
        samples = sine(freq, seconds, amplitude=8000, rate=rate)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out.getvalue()


async def start(tmp_path: Path) -> Runtime:
    config = with_control(loopback_config(), tmp_path / "data")
    announcements = dataclasses.replace(
        config.announcements, dir=str(tmp_path / "announcements"), max_upload_mb=2
    )
    return await Runtime(dataclasses.replace(config, announcements=announcements)).start()


def level(phone: Phone, since: float, freq: float) -> float:
    return tone_levels(phone.audio(since), [freq])[freq]


async def test_announcement_to_one_participant_then_to_the_room(tmp_path: Path) -> None:
    runtime = await start(tmp_path)
    port = runtime.bridge.transports.udp_port
    phones = [Phone(LOOPBACK, port, "ann", tone_hz=hz, user=user) for user, hz in PHONES.items()]
    loop = asyncio.get_running_loop()
    try:
        async with http(runtime) as client:
            headers = await token_for(client, "app")
            await create(client, headers, "ann")
            for phone in phones:
                assert await phone.call() == 200
            await eventually(lambda: len(runtime.bridge.control.participants("ann")) == 3)

            reply = await client.put("/v1/announcements/tone", content=mp3_bytes(ANNOUNCED_HZ, 2),
                                     headers=headers)
            assert reply.status_code == 201, reply.text
            assert abs(reply.json()["seconds"] - 2.0) < 0.2
            reply = await client.put("/v1/announcements/tone-wav",
                                     content=wav_bytes(ANNOUNCED_HZ, 1.5), headers=headers)
            assert reply.status_code == 201, reply.text
            listed = (await client.get("/v1/announcements", headers=headers)).json()
            assert [a["name"] for a in listed] == ["tone", "tone-wav"]
            other = await token_for(client, "other-app")  # another tenant sees none of them
            assert (await client.get("/v1/announcements", headers=other)).json() == []

            target = next(p for p in runtime.bridge.control.participants("ann")
                          if p.caller == "p900")
            since = loop.time()
            reply = await client.post(
                "/v1/conferences/ann/announcements",
                json={"announcement": "tone", "participant_id": target.id},
                headers=headers,
            )
            assert reply.status_code == 204, reply.text
            await asyncio.sleep(1.5)
            by_name = {phone.user: phone for phone in phones}
            assert level(by_name["p900"], since + 0.2, ANNOUNCED_HZ) > HEARD_DB
            assert level(by_name["p500"], since + 0.2, ANNOUNCED_HZ) < ABSENT_DB
            assert level(by_name["p1300"], since + 0.2, ANNOUNCED_HZ) < ABSENT_DB
            assert level(by_name["p500"], since + 0.2, 1300.0) > HEARD_DB  # the room goes on
            await asyncio.sleep(1.0)  # the 2 s announcement is over

            since = loop.time()
            reply = await client.post("/v1/conferences/ann/announcements",
                                      json={"announcement": "tone-wav"}, headers=headers)
            assert reply.status_code == 204, reply.text
            await asyncio.sleep(1.2)
            for phone in phones:
                assert level(phone, since + 0.2, ANNOUNCED_HZ) > HEARD_DB, phone.user

            for body, message in (
                ({"announcement": "nope"}, "announcement 'nope' not found"),
                ({"prompt": "nope"}, "prompt: unknown prompt 'nope'"),
                ({"prompt": "beep", "announcement": "tone"}, "give exactly one"),
                ({"prompt": "beep", "participant_id": "gone"}, "participant 'gone' not found"),
            ):
                reply = await client.post("/v1/conferences/ann/announcements", json=body,
                                          headers=headers)
                assert reply.status_code in (400, 404), reply.text
                assert message in reply.json()["message"], reply.text
            assert (await client.delete("/v1/announcements/tone", headers=headers)).status_code \
                == 204
            assert (await client.delete("/v1/announcements/tone", headers=headers)).status_code \
                == 404
    finally:
        for phone in phones:
            await phone.hangup()
        await runtime.stop()


async def raw_put(port: int, path: str, token: str, length: int, first: bytes) -> bytes:
    """A PUT declaring `length` bytes but sending only `first`: the answer must come from the
    headers, before the body is read."""
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    writer.write(
        f"PUT {path} HTTP/1.1\r\nHost: {LOOPBACK}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: audio/wav\r\nContent-Length: {length}\r\n\r\n".encode() + first
    )
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(4096), 10)
    writer.close()
    return answer


async def test_bad_uploads_get_clear_errors_and_the_calls_carry_on(tmp_path: Path) -> None:
    runtime = await start(tmp_path)
    port = runtime.bridge.transports.udp_port
    phones = [Phone(LOOPBACK, port, "bad", tone_hz=hz, user=user) for user, hz in PHONES.items()]
    loop = asyncio.get_running_loop()
    try:
        async with http(runtime) as client:
            headers = await token_for(client, "app")
            await create(client, headers, "bad")
            for phone in phones:
                assert await phone.call() == 200
            since = loop.time()

            reply = await client.put("/v1/announcements/notes", content=b"just some text\n" * 99,
                                     headers=headers)
            assert reply.status_code == 400, reply.text
            assert reply.json()["message"].startswith("body: not an audio file")
            reply = await client.put("/v1/announcements/junk", content=bytes(range(256)) * 40,
                                     headers=headers)
            assert reply.status_code == 400 and "not an audio file" in reply.json()["message"]
            reply = await client.put("/v1/announcements/Bad Name", content=b"x", headers=headers)
            assert reply.status_code == 400 and reply.json()["message"].startswith("name:")

            token = headers["Authorization"].split()[1]
            answer = await raw_put(runtime.http_port, "/v1/announcements/huge", token, 1 << 30,
                                   b"RIFF")
            assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
            assert b"body: at most 2097152 bytes" in answer  # announcements.max_upload_mb

            async def chunks():  # no Content-Length: counted while it streams in
                for _ in range(40):
                    yield b"\0" * 65536

            reply = await client.put("/v1/announcements/streamed", content=chunks(),
                                     headers=headers)
            assert reply.status_code == 413, reply.text
            assert (await client.get("/v1/announcements", headers=headers)).json() == []
            bigger = wav_bytes(ANNOUNCED_HZ, 9.0)  # 1.5 MiB: over the API's usual body limit
            assert 1 << 20 < len(bigger) < 2 << 20
            reply = await client.put("/v1/announcements/long", content=bigger, headers=headers)
            assert reply.status_code == 201, reply.text
            reply = await client.post("/v1/conferences", content=b"{" + b" " * (1_100_000) + b"}",
                                      headers={**headers, "Content-Type": "application/json"})
            assert reply.status_code == 413, reply.text  # elsewhere the usual limit holds

            await asyncio.sleep(1.0)
            assert len(runtime.bridge.control.participants("bad")) == 3
            for phone in phones:
                others = [hz for user, hz in PHONES.items() if user != phone.user]
                heard = tone_levels(phone.audio(since + 0.3), others)
                assert all(v > HEARD_DB for v in heard.values()), (phone.user, heard)
    finally:
        for phone in phones:
            await phone.hangup()
        await runtime.stop()


async def test_end_on_exit_the_leader_leaving_ends_the_conference(tmp_path: Path) -> None:
    """A conference with `end_on_leader_exit` ends, hanging everyone up, when its leader leaves
    (without it, the room goes back to HOLDING and the others stay)."""
    runtime = await start(tmp_path)
    port = runtime.bridge.transports.udp_port
    boss = Phone(LOOPBACK, port, "bossroom", tone_hz=500.0, user="boss")
    guest = Phone(LOOPBACK, port, "bossroom", tone_hz=900.0, user="guest")
    try:
        async with http(runtime) as client:
            headers = await token_for(client, "app")
            reply = await client.post(
                "/v1/conferences",
                json={"name": "bossroom", "leader": "boss", "end_on_leader_exit": True},
                headers=headers,
            )
            assert reply.status_code == 201 and reply.json()["end_on_leader_exit"], reply.text
            for phone in (boss, guest):
                assert await phone.call() == 200

            async def state() -> str:
                got = await client.get("/v1/conferences/bossroom", headers=headers)
                return got.json()["state"]

            for _ in range(100):
                if await state() == "ACTIVE":
                    break
                await asyncio.sleep(0.05)
            assert await state() == "ACTIVE"
            await boss.hangup()
            await eventually(lambda: guest.ended_by_bridge)
            assert await state() == "COMPLETED"
            got = (await client.get("/v1/conferences/bossroom", headers=headers)).json()
            assert got["end_reason"] == "leader left (end on exit)", got
    finally:
        for phone in (boss, guest):
            await phone.hangup()
        await runtime.stop()


async def test_an_announcement_reaches_a_g722_softphone_at_16_khz(tmp_path: Path) -> None:
    """Stored at 48 kHz, played at the room's rate: baresip with G.722 hears the upload's
    6 kHz (an 8 kHz copy, as before, cut everything above 4 kHz), and its 1 kHz."""
    runtime = await start(tmp_path)
    port = runtime.bridge.transports.udp_port
    quiet = tmp_path / "quiet.wav"
    quiet.write_bytes(wav_bytes(100.0, 30.0, rate=48000))  # below what the FFT looks at
    phone = Baresip(tmp_path / "g722", tone_hz=440, user="wide", codecs="G722/16000/1",
                    source_file=quiet)
    try:
        async with http(runtime) as client:
            headers = await token_for(client, "app")
            await create(client, headers, "wide")
            upload = wav_bytes(1000.0, 3.0, rate=48000)
            both = np.frombuffer(upload[44:], "<i2").reshape(-1, 2)[:, 0].astype(np.int32)
            both += sine(6000.0, 3.0, amplitude=8000, rate=48000)
            body = io.BytesIO()
            with wave.open(body, "wb") as wav:
                wav.setnchannels(1)
                wav.setsampwidth(2)
                wav.setframerate(48000)
                wav.writeframes(both.astype("<i2").tobytes())
            reply = await client.put("/v1/announcements/wideband", content=body.getvalue(),
                                     headers=headers)
            assert reply.status_code in (200, 201), reply.text
            await phone.start()
            await phone.dial(f"sip:wide@{LOOPBACK}:{port}")
            await eventually(lambda: len(runtime.bridge.control.participants("wide")) == 1)
            reply = await client.post("/v1/conferences/wide/announcements",
                                      json={"announcement": "wideband"}, headers=headers)
            assert reply.status_code in (200, 202, 204), reply.text
            await asyncio.sleep(3.5)
            await phone.hangup()
        await phone.stop()
        heard = phone.heard()
        got = tone_levels(heard[-int(3.0 * 16000):], [1000.0, 6000.0], 16000)
        assert min(got.values()) > HEARD_DB, got
    finally:
        await phone.stop()
        await runtime.stop()
