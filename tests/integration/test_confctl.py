"""`confctl` as a user runs it: a real process talking HTTP to the real bridge and control plane
in this test's event loop, with a scripted SIP phone in the room."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from bridge.tools.phone import Phone
from control.runtime import Runtime
from tests.integration.harness import free_port, loopback_config

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "admin-secret-0123456789"


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    config = loopback_config()
    config = replace(
        config,
        control=replace(config.control, http_port=0, admin_token=ADMIN_TOKEN),
        data=replace(config.data, dir=str(tmp_path)),
    )
    server = await Runtime(config).start()
    try:
        yield server
    finally:
        await server.stop()


def cli_env(url: str, token: str | None) -> dict[str, str]:
    """A clean environment: no CONFCTL_* from the developer's shell, wide tables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONFCTL_")}
    env.update(CONFCTL_URL=url, COLUMNS="200", NO_COLOR="1")
    if token is not None:
        env["CONFCTL_TOKEN"] = token
    return env


async def start_cli(url: str, token: str | None, *args: str) -> asyncio.subprocess.Process:
    """A subprocess, not CliRunner: the server shares this event loop and must keep running."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "control.cli",
        *args,
        env=cli_env(url, token),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def finish(process: asyncio.subprocess.Process, timeout: float = 30) -> Result:
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return Result(process.returncode, out.decode(), err.decode())


async def confctl(url: str, token: str | None, *args: str) -> Result:
    return await finish(await start_cli(url, token, *args))


async def wait_for(condition: Callable[[], object], timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


def watchers(runtime: Runtime) -> int:
    assert runtime.plane is not None
    return len(runtime.plane.broker.watchers)


async def app_token(runtime: Runtime) -> str:
    result = await confctl(runtime.base_url, ADMIN_TOKEN, "token", "create", "acme")
    assert result.code == 0, result.stderr
    line = next(li for li in result.stdout.splitlines() if li.startswith("token: "))
    return line.removeprefix("token: ").strip()


async def test_round_trip_with_a_phone(runtime: Runtime) -> None:
    url = runtime.base_url
    token = await app_token(runtime)
    again = await confctl(url, ADMIN_TOKEN, "token", "create", "acme", "--json")
    assert again.code == 0, again.stderr
    assert json.loads(again.stdout)["application"] == "acme"

    async def run(*args: str) -> Result:
        result = await confctl(url, token, *args)
        assert result.code == 0, result.stderr
        return result

    created = await run("create", "standup", "--duration", "30", "--caller", "+15550100")
    assert "standup" in created.stdout
    assert "sip:standup@" in created.stdout

    listing = await run("rooms")
    assert "standup" in listing.stdout
    assert "1 of 1" in listing.stdout
    rooms = json.loads((await run("rooms", "--json")).stdout)
    assert [r["name"] for r in rooms] == ["standup"]
    assert rooms[0]["callers"] == ["+15550100"]

    phone = Phone(
        "127.0.0.1", runtime.bridge.transports.udp_port, "standup", tone_hz=440.0, user="alice"
    )
    try:
        assert await phone.call() == 200
        shown = await run("show", "standup")
        assert "alice" in shown.stdout
        participant = json.loads((await run("show", "standup", "--json")).stdout)["participants"]
        assert [p["caller"] for p in participant] == ["alice"]
        participant_id = participant[0]["id"]

        watch = await start_cli(url, token, "watch", "--count", "1", "--types", "participant.muted")
        await wait_for(lambda: watchers(runtime) == 1)
        muted = await run("mute", "standup", "alice")
        assert "muted alice" in muted.stdout
        watched = await finish(watch, timeout=10)
        assert watched.code == 0, watched.stderr
        [line] = watched.stdout.strip().splitlines()
        assert "participant.muted" in line
        assert "standup" in line
        assert participant_id in line
        after = json.loads((await run("show", "standup", "--json")).stdout)["participants"]
        assert after[0]["muted"] is True

        watch = await start_cli(url, token, "watch", "--count", "1", "--json", "--types", "dtmf")
        await wait_for(lambda: watchers(runtime) == 1)
        await run("unmute", "standup", participant_id)
        phone.send_rfc4733("5")
        event = json.loads((await finish(watch, timeout=10)).stdout)
        assert event["type"] == "dtmf"
        assert event["data"]["digit"] == "5"
        assert event["data"]["participant_id"] == participant_id

        missing = await confctl(url, token, "mute", "standup", "bob")
        assert missing.code == 1
        assert "not found" in missing.stderr

        await run("lock", "standup")
        assert json.loads((await run("show", "standup", "--json")).stdout)["conference"]["locked"]
        await run("modify", "standup", "--unlock", "--extend", "15")
        conference = json.loads((await run("show", "standup", "--json")).stdout)["conference"]
        assert conference["locked"] is False
        assert conference["duration_minutes"] == 45

        await run("callers", "add", "standup", "+15550199")
        await run("callers", "remove", "standup", "+15550100")
        conference = json.loads((await run("show", "standup", "--json")).stdout)["conference"]
        assert conference["callers"] == ["+15550199"]

        kicked = await run("kick", "standup", "alice")
        assert participant_id in kicked.stdout
        await wait_for(lambda: phone.ended_by_bridge)
        left = json.loads((await run("show", "standup", "--json")).stdout)["participants"]
        assert left == []
    finally:
        await phone.hangup()

    await run("remove", "standup")
    state = json.loads((await run("show", "standup", "--json")).stdout)["conference"]["state"]
    assert state == "COMPLETED"


async def test_unknown_room_prints_the_api_message(runtime: Runtime) -> None:
    token = await app_token(runtime)
    result = await confctl(runtime.base_url, token, "show", "nosuch")
    assert result.code == 1
    assert "conference 'nosuch' not found" in result.stderr
    assert result.stdout == ""


async def test_bad_token_is_refused(runtime: Runtime) -> None:
    result = await confctl(runtime.base_url, "not-a-token", "rooms")
    assert result.code == 1
    assert "invalid token" in result.stderr
    admin_only = await confctl(runtime.base_url, "not-a-token", "token", "create", "acme")
    assert admin_only.code == 1
    assert "admin token required" in admin_only.stderr


async def test_bad_event_type_is_refused(runtime: Runtime) -> None:
    token = await app_token(runtime)
    result = await confctl(runtime.base_url, token, "watch", "--types", "participant.bogus")
    assert result.code == 1
    assert "types" in result.stderr


async def test_server_down_exits_2_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = await confctl(url, "whatever", "rooms")
    assert result.code == 2
    assert url in result.stderr
