"""Teaming's voice mail (seed 002) end to end, through the dialect's own routes: a SIPp caller
to a do-not-disturb line hears the prompt and the tone, leaves 3 s of a 1 kHz tone, and the API
lists the message and returns a WAV whose dominant frequency is 1 kHz and whose length is
3 s +- 0.5 (check 2); `#` ends a message early, a caller who hangs up before the tone leaves
none; mark read/unread one or all, delete; every bad input in Teaming's error shape."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import json
import wave
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from bridge.tools.phone import Phone
from control.runtime import Runtime
from control.voicemail import BEEP, PROMPT, prompt_seconds
from tests.integration.harness import (
    ADMIN_TOKEN,
    LOOPBACK,
    SCENARIOS,
    eventually,
    loopback_config,
    run_sipp,
    with_control,
)
from tests.integration.test_compat_orange import eventually as eventually_until
from tests.integration.test_softphone import write_tone_file

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
MESSAGE_FIELDS = {"duration", "callingPartyInfo", "read", "time", "messageId"}


async def start(tmp_path: Path) -> Runtime:
    config = with_control(loopback_config(), tmp_path / "data")
    recording = dataclasses.replace(config.recording, dir=str(tmp_path / "recordings"))
    return await Runtime(dataclasses.replace(config, recording=recording)).start()


@dataclasses.dataclass
class User:
    client: httpx.AsyncClient
    id: str
    headers: dict[str, str]

    @classmethod
    async def open(cls, client: httpx.AsyncClient, name: str) -> User:
        reply = await client.post(f"/v1/admin/applications/{name}/tokens", headers=ADMIN)
        assert reply.status_code == 201, reply.text
        body = reply.json()
        return cls(client, body["application_id"], {"Authorization": f"Bearer {body['token']}"})

    @property
    def messages_url(self) -> str:
        return f"/teaming/users/{self.id}/voiceMessages"

    async def messages(self) -> list[dict[str, Any]]:
        reply = await self.client.get(self.messages_url, headers=self.headers)
        assert reply.status_code == 200, reply.text
        assert reply.headers["X-Total-Count"] == str(len(reply.json()))
        return list(reply.json())

    async def do_not_disturb(self, room: str) -> None:
        made = await self.client.post("/v1/conferences", json={"name": room}, headers=self.headers)
        assert made.status_code == 201, made.text
        reply = await self.client.put(
            f"/teaming/users/{self.id}/services/doNotDisturb",
            json={"active": True},
            headers=self.headers,
        )
        assert reply.status_code == 204, reply.text


def greeting_s() -> float:
    return prompt_seconds(PROMPT) + prompt_seconds(BEEP)


def voicemail_scenario(workdir: Path, wait_ms: int) -> Path:
    """uac_tone.xml with a pause before the tone: the caller waits for the beep."""
    text = (SCENARIOS / "uac_tone.xml").read_text()
    marker = '  <nop>\n    <action>\n      <exec rtp_stream="tone.ulaw,-1,0"/>'
    assert marker in text
    scenario = workdir / "uac_voicemail.xml"
    scenario.write_text(text.replace(marker, f'  <pause milliseconds="{wait_ms}"/>\n{marker}'))
    return scenario


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def read_wav(data: bytes) -> tuple[np.ndarray, int]:
    with wave.open(io.BytesIO(data), "rb") as wav:
        assert wav.getnchannels() == 1 and wav.getsampwidth() == 2
        frames = wav.readframes(wav.getnframes())
        return np.frombuffer(frames, dtype="<i2"), wav.getframerate()


async def test_sipp_caller_leaves_a_message_on_a_dnd_line(tmp_path: Path) -> None:
    """Check 2."""
    runtime = await start(tmp_path)
    try:
        async with httpx.AsyncClient(base_url=runtime.base_url, trust_env=False) as client:
            user = await User.open(client, "acme")
            await user.do_not_disturb("desk")
            write_tone_file(tmp_path / "tone.ulaw", 1000.0)
            wait_ms = int((greeting_s() + 0.15) * 1000)
            args = ["-sf", str(voicemail_scenario(tmp_path, wait_ms)), "-s", "desk"]
            result = await run_sipp(
                runtime.bridge.transports.udp_port,
                [*args, "-d", "3000", "-m", "1"],
                tmp_path,
                timeout=60,
            )
            assert result.successful == 1, result.stderr[-800:]
            await eventually_until(lambda: _count(user, 1), timeout=15)
            (listed,) = await user.messages()
            assert set(listed) == MESSAGE_FIELDS
            assert listed["callingPartyInfo"] == {"name": "Unavailable", "phoneNumber": "sipp"}
            assert listed["read"] is False and listed["time"].endswith("Z")
            assert 2500 <= int(listed["duration"]) <= 3500, listed

            reply = await client.get(
                f"{user.messages_url}/{listed['messageId']}", headers=user.headers
            )
            assert reply.status_code == 200, reply.text
            body = reply.json()
            assert set(body) == MESSAGE_FIELDS | {"mediaContent"}
            assert body["mediaContent"]["mediaType"] == "WAV"
            samples, rate = read_wav(base64.b64decode(body["mediaContent"]["content"]))
            assert abs(len(samples) / rate - 3.0) <= 0.5, len(samples) / rate
            assert abs(dominant_hz(samples, rate) - 1000.0) < 10.0
            assert runtime.bridge.control.participants("desk") == []  # nobody got in
    finally:
        await runtime.stop()


async def _count(user: User, expected: int) -> bool:
    return len(await user.messages()) == expected


async def test_pound_ends_hangup_before_the_tone_leaves_none_and_management(
    tmp_path: Path,
) -> None:
    runtime = await start(tmp_path)
    phones: list[Phone] = []

    def dial(user: str) -> Phone:
        port = runtime.bridge.transports.udp_port
        phone = Phone(LOOPBACK, port, "desk", tone_hz=1000.0, user=user)
        phones.append(phone)
        return phone

    try:
        async with httpx.AsyncClient(base_url=runtime.base_url, trust_env=False) as client:
            user = await User.open(client, "acme")
            other = await User.open(client, "globex")
            await user.do_not_disturb("desk")

            early = dial("+4930111")
            assert await early.call() == 200
            await asyncio.sleep(1.0)
            await early.hangup()  # before the tone: no message

            pound = dial("+4930222")
            assert await pound.call() == 200
            await asyncio.sleep(greeting_s() + 1.5)
            pound.send_rfc4733("#")
            await eventually(lambda: pound.ended_by_bridge, timeout=10)
            await eventually_until(lambda: _count(user, 1), timeout=15)
            (message,) = await user.messages()
            assert message["callingPartyInfo"]["phoneNumber"] == "+4930222"
            assert 1000 <= int(message["duration"]) <= 2500, message

            second = dial("+4930333")
            assert await second.call() == 200
            await asyncio.sleep(greeting_s() + 1.0)
            await second.hangup()
            await eventually_until(lambda: _count(user, 2), timeout=15)
            newest, oldest = await user.messages()
            assert newest["callingPartyInfo"]["phoneNumber"] == "+4930333"  # newest first

            url = f"{user.messages_url}/{oldest['messageId']}"
            read = await client.put(url, content=json.dumps({"read": True}), headers=user.headers)
            assert read.status_code == 204
            assert [m["read"] for m in await user.messages()] == [False, True]
            every = await client.put(user.messages_url, json={"read": True}, headers=user.headers)
            assert every.status_code == 204
            assert [m["read"] for m in await user.messages()] == [True, True]
            none = await client.put(user.messages_url, json={"read": False}, headers=user.headers)
            assert none.status_code == 204
            assert [m["read"] for m in await user.messages()] == [False, False]
            page = await client.get(f"{user.messages_url}?limit=1", headers=user.headers)
            assert page.headers["X-Result-Count"] == "1" and page.headers["X-Total-Count"] == "2"

            # bad input, in Teaming's shape
            def error(reply: httpx.Response, status: int, code: int, starts: str) -> None:
                assert reply.status_code == status, reply.text
                body = reply.json()
                assert set(body) == {"code", "message", "description"} and body["code"] == code
                assert body["message"].startswith(starts), body

            error(await client.get(f"{user.messages_url}/nope", headers=user.headers), 404, 60,
                  "voice message ")  # fmt: skip
            error(await client.put(url, json={"read": "yes"}, headers=user.headers), 400, 22,
                  "read:")  # fmt: skip
            error(await client.put(url, json={}, headers=user.headers), 400, 22, "read:")
            error(await client.put(url, json={"read": True, "x": 1}, headers=user.headers),
                  400, 22, "x: unknown field")  # fmt: skip
            error(await client.put(url, content=b"{", headers=user.headers), 400, 22, "body:")
            error(await client.get(url, headers=other.headers), 404, 60, "user ")
            foreign = f"/teaming/users/{other.id}/voiceMessages/{oldest['messageId']}"
            error(await client.get(foreign, headers=other.headers), 404, 60, "voice message ")
            error(await client.get(f"{user.messages_url}?offset=-1", headers=user.headers),
                  400, 28, "offset:")  # fmt: skip
            error(await client.get(user.messages_url), 400, 25, "")

            files = sorted((tmp_path / "recordings" / "voicemail").glob("*.wav"))
            assert len(files) == 2
            assert (await client.delete(url, headers=user.headers)).status_code == 204
            error(await client.delete(url, headers=user.headers), 404, 60, "voice message ")
            assert len(await user.messages()) == 1
            assert len(sorted((tmp_path / "recordings" / "voicemail").glob("*.wav"))) == 1
    finally:
        for phone in phones:
            await phone.close()
        await runtime.stop()
