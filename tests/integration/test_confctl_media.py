"""confctl's recording and announcement commands against a running bridge (a subprocess, as
people run it): record, stop-recording, recordings, download; upload, announce."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

import av
import pytest

from bridge.tools.phone import Phone
from control.runtime import Runtime
from tests.integration.harness import ADMIN_TOKEN, LOOPBACK, loopback_config
from tests.integration.test_announcements import wav_bytes
from tests.integration.test_confctl import Result, app_token, confctl, wait_for

pytestmark = pytest.mark.integration


async def test_record_and_announce_with_confctl(tmp_path: Path) -> None:
    config = loopback_config()
    config = replace(
        config,
        control=replace(config.control, http_port=0, admin_token=ADMIN_TOKEN),
        data=replace(config.data, dir=str(tmp_path)),
        recording=replace(config.recording, dir=str(tmp_path / "recordings")),
        announcements=replace(config.announcements, dir=str(tmp_path / "announcements")),
    )
    runtime = await Runtime(config).start()
    phone = Phone(LOOPBACK, runtime.bridge.transports.udp_port, "cli", tone_hz=700.0, user="bob")
    try:
        url = runtime.base_url
        token = await app_token(runtime)

        async def run(*args: str) -> Result:
            result = await confctl(url, token, *args)
            assert result.code == 0, (args, result.stderr)
            return result

        await run("create", "cli")
        created = json.loads((await run("create", "led", "--leader", "boss", "--end-on-exit",
                                        "--json")).stdout)
        assert created["end_on_leader_exit"] and created["leader"] == "boss"
        assert await phone.call() == 200
        await wait_for(lambda: len(runtime.bridge.control.participants("cli")) == 1)

        started = await run("record", "cli", "--format", "ogg")
        assert "recording cli to cli-" in started.stdout
        refused = await confctl(url, token, "record", "cli")
        assert refused.code == 1 and "recording already" in refused.stderr
        await asyncio.sleep(1.0)
        await run("stop-recording", "cli")
        await wait_for(lambda: runtime.bridge.control.recording("cli") is None)
        (listed,) = json.loads((await run("recordings", "cli", "--json")).stdout)
        assert listed["file"].endswith(".ogg") and not listed["recording"]
        saved = await run("download", "cli", listed["file"], "--to", str(tmp_path))
        assert "saved" in saved.stdout
        with av.open(str(tmp_path / listed["file"])) as container:
            assert container.streams.audio[0].codec_context.name == "opus"

        (tmp_path / "tone.wav").write_bytes(wav_bytes(2500.0, 1.0))
        uploaded = await run("upload", "tone", str(tmp_path / "tone.wav"))
        assert "uploaded tone (1.0 s)" in uploaded.stdout
        await run("announce", "cli", "--announcement", "tone", "--participant", "bob")
        await run("announce", "cli", "--prompt", "beep")
        missing = await confctl(url, token, "announce", "cli", "--announcement", "nope")
        assert missing.code == 1 and "announcement 'nope' not found" in missing.stderr
    finally:
        await phone.hangup()
        await runtime.stop()
