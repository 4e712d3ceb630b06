"""Teaming's voice mail for the callers who cannot get in (seed 002, issue 16), through the
dialect's own routes: with `voiceMessaging` active, a SIPp caller to a **locked** conference and
one left **unanswered** on a manual-answer conference each leave 3 s of a 1 kHz tone, returned
as a WAV whose dominant frequency is 1 kHz and whose length is 3 s +- 0.5 (check 2's form), and
a caller to a full conference is answered by voice mail too;
"Voice Messaging" subscribers hear of new and deleted messages, "Basic Call" ones of the call
that went to voice mail; and calls that never reach a voice-mail room (cancelled while ringing,
hung up during the prompt, answered by the operator) leave nothing behind in the bridge or the
control plane."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge.tools.phone import Phone
from control.runtime import Runtime
from tests.integration.harness import (
    LOOPBACK,
    SCENARIOS,
    eventually,
    loopback_config,
    run_sipp,
    with_control,
)
from tests.integration.test_softphone import write_tone_file
from tests.integration.test_teaming_voicemail import (
    User,
    dominant_hz,
    greeting_s,
    read_wav,
    voicemail_scenario,
)
from tests.receiver import Receiver

pytestmark = pytest.mark.integration


async def start(tmp_path: Path, **sip: Any) -> Runtime:
    config = with_control(loopback_config(sip=sip or None), tmp_path / "data")
    recording = dataclasses.replace(config.recording, dir=str(tmp_path / "recordings"))
    return await Runtime(dataclasses.replace(config, recording=recording)).start()


async def put_service(user: User, service: str, body: dict[str, Any]) -> None:
    url = f"/teaming/users/{user.id}/services/{service}"
    reply = await user.client.put(url, json=body, headers=user.headers)
    assert reply.status_code == 204, reply.text


async def conference(user: User, name: str, **fields: Any) -> None:
    body = {"name": name, **fields}
    reply = await user.client.post("/v1/conferences", json=body, headers=user.headers)
    assert reply.status_code == 201, reply.text


async def tone_message(runtime: Runtime, tmp_path: Path, room: str, rings_s: float = 0) -> None:
    """A SIPp caller to `room` waits out the rings and the greeting, then sends 3 s of 1 kHz."""
    write_tone_file(tmp_path / "tone.ulaw", 1000.0)
    wait_ms = int((greeting_s() + 0.15) * 1000)
    args = ["-sf", str(voicemail_scenario(tmp_path, wait_ms)), "-s", room, "-d", "3000"]
    result = await run_sipp(
        runtime.bridge.transports.udp_port, [*args, "-m", "1"], tmp_path, timeout=60 + rings_s
    )
    assert result.successful == 1, result.stderr[-800:]


async def the_message(user: User) -> dict[str, Any]:
    """The only message on the line, with its audio checked: 1 kHz, 3 s +- 0.5."""
    for _ in range(300):
        listed = await user.messages()
        if listed:
            break
        await asyncio.sleep(0.05)
    (message,) = listed
    assert message["callingPartyInfo"] == {"name": "Unavailable", "phoneNumber": "sipp"}
    url = f"{user.messages_url}/{message['messageId']}"
    reply = await user.client.get(url, headers=user.headers)
    assert reply.status_code == 200, reply.text
    samples, rate = read_wav(base64.b64decode(reply.json()["mediaContent"]["content"]))
    assert abs(len(samples) / rate - 3.0) <= 0.5, len(samples) / rate
    assert abs(dominant_hz(samples, rate) - 1000.0) < 10.0
    return message


async def subscribe(user: User, receiver: Receiver, event_type: str) -> str:
    body = {"callBackUrl": receiver.url(), "eventType": event_type}
    url = f"/teaming/users/{user.id}/calls"
    reply = await user.client.post(url, json=body, headers=user.headers)
    assert reply.status_code == 201, reply.text
    return str(reply.json()["subscriptionId"])


def nothing_left(runtime: Runtime) -> bool:
    """No caller pending in voice mail and no voice-mail room in the bridge."""
    core = runtime.bridge.core
    assert core is not None
    rooms = [name for name in core.rooms.by_name if name.startswith("vm.")]
    return not runtime.plane.voicemail.pending and not rooms


async def test_locked_conference_takes_a_message(tmp_path: Path) -> None:
    runtime = await start(tmp_path)
    receiver = Receiver()
    await receiver.start()
    try:
        async with httpx.AsyncClient(base_url=runtime.base_url, trust_env=False) as client:
            user = await User.open(client, "acme")
            subscription = await subscribe(user, receiver, "Voice Messaging")
            one = f"/teaming/subscriptions/{subscription}"
            listed = await client.get(one, headers=user.headers)
            assert listed.json()["eventType"] == "Voice Messaging"
            await conference(user, "desk", locked=True)
            refused = Phone(LOOPBACK, runtime.bridge.transports.udp_port, "desk")
            try:
                assert await refused.call() == 403  # voice mail is off by default
            finally:
                await refused.close()
            await put_service(user, "voiceMessaging", {"active": True})
            url = f"/teaming/users/{user.id}/services/voiceMessaging"
            shown = await client.get(url, headers=user.headers)
            assert shown.json() == {"active": True, "ringSplash": False}

            await tone_message(runtime, tmp_path, "desk")
            message = await the_message(user)
            assert runtime.bridge.control.participants("desk") == []  # nobody got in
            await eventually(lambda: nothing_left(runtime), timeout=10)

            await eventually(lambda: len(receiver.delivered) == 1, timeout=10)
            (new,) = receiver.delivered
            assert new["type"] == "voicemail.new"
            assert new["data"]["message_id"] == message["messageId"]
            assert new["data"]["caller"] == "sipp"
            assert new["data"]["duration_ms"] == int(message["duration"])
            url = f"{user.messages_url}/{message['messageId']}"
            assert (await client.delete(url, headers=user.headers)).status_code == 204
            await eventually(lambda: len(receiver.delivered) == 2, timeout=10)
            assert receiver.delivered[1]["type"] == "voicemail.deleted"
            assert receiver.delivered[1]["data"]["message_id"] == message["messageId"]

            await conference(user, "small", max_participants=2)  # full: voice mail too
            port = runtime.bridge.transports.udp_port
            phones = [Phone(LOOPBACK, port, "small", user=f"+493011{n}") for n in range(3)]
            try:
                assert [await phone.call() for phone in phones] == [200, 200, 200]
                assert len(runtime.bridge.control.participants("small")) == 2
                await eventually(lambda: len(runtime.plane.voicemail.pending) == 1, timeout=5)
                await phones[2].hangup()  # before the tone: no message
            finally:
                for phone in phones:
                    await phone.hangup()
            await eventually(lambda: nothing_left(runtime), timeout=10)
            assert await user.messages() == []
    finally:
        await receiver.close()
        await runtime.stop()


async def test_unanswered_call_takes_a_message_after_its_rings(tmp_path: Path) -> None:
    runtime = await start(tmp_path)
    receiver = Receiver()
    await receiver.start()
    try:
        async with httpx.AsyncClient(base_url=runtime.base_url, trust_env=False) as client:
            user = await User.open(client, "acme")
            await subscribe(user, receiver, "Basic Call")
            await conference(user, "desk", manual_answer=True)
            await put_service(user, "callForwardingNoAnswer", {"numberOfRings": 1})  # 6 s
            await put_service(user, "voiceMessaging", {"active": True})
            loop = asyncio.get_running_loop()
            began = loop.time()
            caller = asyncio.create_task(tone_message(runtime, tmp_path, "desk", rings_s=6))
            calls_url = f"/teaming/users/{user.id}/calls"

            async def ringing() -> bool:
                reply = await client.get(calls_url, headers=user.headers)
                return [c["state"] for c in reply.json()] == ["ALERTING"]

            for _ in range(100):
                if await ringing():
                    break
                await asyncio.sleep(0.05)
            assert await ringing()  # the user's line rings first
            await caller
            assert loop.time() - began >= 6.0 + greeting_s() + 3.0 - 0.5
            await the_message(user)
            assert runtime.bridge.control.participants("desk") == []
            await eventually(lambda: nothing_left(runtime), timeout=10)

            def kinds() -> list[str]:
                return [event["type"] for event in receiver.delivered]

            await eventually(lambda: "call.ended" in kinds(), timeout=10)  # once, as any call
            assert kinds() == ["call.alerting", "participant.joined", "call.ended"]
            ids = {event["data"]["participant_id"] for event in receiver.delivered}
            assert len(ids) == 1  # one call from its ring to its end
    finally:
        await receiver.close()
        await runtime.stop()


async def test_calls_that_never_leave_a_message_leave_nothing_behind(tmp_path: Path) -> None:
    """The voice-mail gate leak: nothing is kept for a call until it is in the voice-mail
    room, and nothing after it leaves."""
    runtime = await start(tmp_path, answer_delay_ms=2000)  # DND calls ring before the answer
    port = runtime.bridge.transports.udp_port
    phones: list[Phone] = []
    try:
        async with httpx.AsyncClient(base_url=runtime.base_url, trust_env=False) as client:
            user = await User.open(client, "acme")
            await conference(user, "desk")
            await conference(user, "front", manual_answer=True)
            await put_service(user, "doNotDisturb", {"active": True})

            cancelled = await run_sipp(  # CANCEL while ringing, before voice mail answers
                port, ["-sf", str(SCENARIOS / "uac_cancel.xml"), "-s", "desk", "-m", "2"],
                tmp_path,
            )  # fmt: skip
            assert (cancelled.successful, cancelled.failed) == (2, 0), cancelled.stderr[-800:]
            assert nothing_left(runtime)

            early = Phone(LOOPBACK, port, "desk", tone_hz=1000.0, user="+4930111")
            phones.append(early)
            assert await early.call() == 200
            await eventually(lambda: bool(runtime.plane.voicemail.pending), timeout=5)
            await asyncio.sleep(0.5)
            await early.hangup()  # during the prompt
            await eventually(lambda: nothing_left(runtime), timeout=5)

            await put_service(user, "doNotDisturb", {"active": False})
            await put_service(user, "voiceMessaging", {"active": True})
            answered = Phone(LOOPBACK, port, "front", tone_hz=1000.0, user="+4930222")
            phones.append(answered)
            dialling = asyncio.create_task(answered.call(timeout=15))
            calls_url = f"/teaming/users/{user.id}/calls"

            async def ringing_call() -> str | None:
                listed = (await client.get(calls_url, headers=user.headers)).json()
                return listed[0]["callId"] if listed else None

            for _ in range(100):
                if call_id := await ringing_call():
                    break
                await asyncio.sleep(0.05)
            assert call_id
            reply = await client.put(f"{calls_url}/{call_id}?action=ANSWER", headers=user.headers)
            assert reply.status_code == 204, reply.text
            assert await dialling == 200
            await eventually(lambda: len(runtime.bridge.control.participants("front")) == 1)
            assert nothing_left(runtime)

            stray = Phone(LOOPBACK, port, f"vm.{user.id[:8]}.1")
            phones.append(stray)
            assert await stray.call() == 404  # voice-mail rooms are not dialled
            assert stray.last_final is not None and stray.last_final.phrase == "No such room"
            assert await user.messages() == []
    finally:
        for phone in phones:
            await phone.close()
        await runtime.stop()
