"""Check 4 of the wideband issue: recording a room through the API, end to end.

Three scripted phones (PCMU, 500/1100/1700 Hz) in a conference; POST .../recording, two
seconds, DELETE .../recording: the recording.stopped event carries path, duration and size; the
file is listed, downloads, opens with PyAV with all three tones and the right duration, and
ffprobe (FFmpeg's command-line prober) reads it with that duration too. An
unwritable recording directory is a 503 naming the problem, and the calls carry on; a disk
that fills up ends the recording with an event naming the error, and the calls carry on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import subprocess
import time
from pathlib import Path

import av
import numpy as np
import pytest

from bridge.events import BridgeEvent, RecordingStarted, RecordingStopped
from bridge.media.tones import tone_levels
from bridge.tools.phone import Phone
from control.runtime import Runtime
from tests.integration.harness import LOOPBACK, eventually, loopback_config, with_control
from tests.integration.test_control_api import create, http, token_for

pytestmark = pytest.mark.integration

TONES = {"p500": 500.0, "p1100": 1100.0, "p1700": 1700.0}
RECORD_S = 2.0


async def start(tmp_path: Path, recording_dir: Path) -> Runtime:
    config = with_control(loopback_config(), tmp_path / "data")
    config = dataclasses.replace(
        config, recording=dataclasses.replace(config.recording, dir=str(recording_dir))
    )
    return await Runtime(config).start()


async def phones_in(runtime: Runtime, room: str) -> list[Phone]:
    port = runtime.bridge.transports.udp_port
    phones = [Phone(LOOPBACK, port, room, tone_hz=hz, user=user) for user, hz in TONES.items()]
    for phone in phones:
        assert await phone.call() == 200
    await eventually(lambda: len(runtime.bridge.control.participants(room)) == 3)
    return phones


async def calls_carry_on(runtime: Runtime, phones: list[Phone]) -> None:
    """A recording's failure leaves the room's three calls up, the first hearing the two others."""
    since = asyncio.get_running_loop().time()
    await asyncio.sleep(1.5)
    assert len(runtime.bridge.control.participants("rec")) == 3
    heard = tone_levels(phones[0].audio(since + 0.3), [1100.0, 1700.0])
    assert all(level > -35 for level in heard.values()), heard


def probed_duration(path: Path, fmt: str) -> float:
    """The duration ffprobe reads from the file's container (it must open and parse it)."""
    ffprobe = shutil.which("ffprobe")
    assert ffprobe, "ffprobe is missing: scripts/setup.sh --test installs Debian's ffmpeg"
    done = subprocess.run(
        [ffprobe, "-v", "error", "-show_entries", "format=format_name,duration:stream=codec_name",
         "-of", "json", str(path)],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert done.returncode == 0, done.stderr
    probe = json.loads(done.stdout)
    codec = probe["streams"][0]["codec_name"]
    assert (probe["format"]["format_name"], codec) == (
        ("wav", "pcm_s16le") if fmt == "wav" else ("ogg", "opus")
    ), probe
    return float(probe["format"]["duration"])


def decoded(data: bytes, path: Path) -> tuple[np.ndarray, int]:
    path.write_bytes(data)
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        samples = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(stream)])
        rate = stream.rate
    if samples.dtype.kind == "f":
        samples = np.rint(samples * 32767)
    return samples.astype(np.int16), rate


@pytest.mark.parametrize("fmt", ["wav", "ogg"])
async def test_record_a_three_tone_room_list_and_download_it(tmp_path: Path, fmt: str) -> None:
    runtime = await start(tmp_path, tmp_path / "recordings")
    events: list[BridgeEvent] = []
    runtime.bridge.events.subscribe(events.append)
    phones: list[Phone] = []
    try:
        async with http(runtime) as client:
            headers = await token_for(client, "app")
            await create(client, headers, "rec")
            phones = await phones_in(runtime, "rec")
            asked_at = time.monotonic()
            reply = await client.post("/v1/conferences/rec/recording", json={"format": fmt},
                                      headers=headers)
            assert reply.status_code == 201, reply.text
            name = reply.json()["file"]
            assert name.startswith("rec-") and name.endswith(f".{fmt}")
            again = await client.post("/v1/conferences/rec/recording", headers=headers)
            assert again.status_code == 409 and "recording already" in again.json()["message"]
            await asyncio.sleep(RECORD_S)
            reply = await client.delete("/v1/conferences/rec/recording", headers=headers)
            assert reply.status_code == 204, reply.text
            await eventually(lambda: any(isinstance(e, RecordingStopped) for e in events))
            # The recording spans at least the sleep and at most from the start request to the
            # stop event (on a loaded machine the requests themselves can take a second or two).
            span_s = time.monotonic() - asked_at
            (started,) = [e for e in events if isinstance(e, RecordingStarted)]
            (stopped,) = [e for e in events if isinstance(e, RecordingStopped)]
            assert started.path == stopped.path == str(tmp_path / "recordings" / name)
            assert stopped.reason == "stopped"
            assert RECORD_S - 0.5 < stopped.duration_s < span_s + 0.5, (stopped, span_s)
            assert stopped.size_bytes == (tmp_path / "recordings" / name).stat().st_size > 0

            listed = (await client.get("/v1/conferences/rec/recordings", headers=headers)).json()
            assert listed == [{"file": name, "size_bytes": stopped.size_bytes,
                               "recording": False}]
            reply = await client.get(f"/v1/conferences/rec/recordings/{name}", headers=headers)
            assert reply.status_code == 200 and len(reply.content) == stopped.size_bytes
            samples, rate = decoded(reply.content, tmp_path / f"copy.{fmt}")
            assert abs(len(samples) / rate - stopped.duration_s) < 1.0
            probed = probed_duration(tmp_path / f"copy.{fmt}", fmt)
            assert abs(probed - stopped.duration_s) < 1.0, (probed, stopped.duration_s)
            levels = tone_levels(samples[rate // 2 :], list(TONES.values()), rate)
            assert all(level > -35 for level in levels.values()), levels

            for bad in ("../data/confbridge.db", "other-20260101T000000Z.wav", name + "x"):
                reply = await client.get(f"/v1/conferences/rec/recordings/{bad}",
                                         headers=headers)
                assert reply.status_code == 404, (bad, reply.text)
            stop = await client.delete("/v1/conferences/rec/recording", headers=headers)
            assert stop.status_code == 409 and "not recording" in stop.json()["message"]
    finally:
        for phone in phones:
            await phone.hangup()
        await runtime.stop()


async def test_unwritable_recording_directory_is_an_error_naming_it_and_calls_carry_on(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    runtime = await start(tmp_path, blocker / "recordings")
    phones: list[Phone] = []
    try:
        async with http(runtime) as client:
            headers = await token_for(client, "app")
            await create(client, headers, "rec")
            phones = await phones_in(runtime, "rec")
            reply = await client.post("/v1/conferences/rec/recording", headers=headers)
            assert reply.status_code == 503, reply.text
            assert reply.json()["message"] == (
                f"recording directory {blocker / 'recordings'}: Not a directory"
            )
            bad = await client.post("/v1/conferences/rec/recording", json={"format": "mp3"},
                                    headers=headers)
            assert bad.status_code == 400, bad.text
            await calls_carry_on(runtime, phones)
    finally:
        for phone in phones:
            await phone.hangup()
        await runtime.stop()


async def test_a_full_disk_ends_the_recording_with_the_reason_and_calls_carry_on(
    tmp_path: Path,
) -> None:
    """The recording directory on a 64 KiB tmpfs (we run as root: the test mounts it): the WAV
    fills it in under a second, the recording ends by itself with a `recording.stopped` event
    whose reason names the error, and the three callers go on hearing each other."""
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"a full disk needs a small tmpfs, and mount refused: {mounted.stderr}")
    runtime: Runtime | None = None
    phones: list[Phone] = []
    try:
        runtime = await start(tmp_path, small)
        events: list[BridgeEvent] = []
        runtime.bridge.events.subscribe(events.append)
        async with http(runtime) as client:
            headers = await token_for(client, "app")
            await create(client, headers, "rec")
            phones = await phones_in(runtime, "rec")
            reply = await client.post("/v1/conferences/rec/recording", json={"format": "wav"},
                                      headers=headers)
            assert reply.status_code == 201, reply.text
            await eventually(lambda: any(isinstance(e, RecordingStopped) for e in events))
            (stopped,) = [e for e in events if isinstance(e, RecordingStopped)]
            assert stopped.reason.startswith("error: [Errno 28] No space left on device"), stopped
            assert 0 < stopped.size_bytes <= 64 * 1024 and stopped.path.startswith(str(small))
            listed = (await client.get("/v1/conferences/rec/recordings", headers=headers)).json()
            assert [r["recording"] for r in listed] == [False], listed
            await calls_carry_on(runtime, phones)
    finally:
        for phone in phones:
            await phone.hangup()
        if runtime is not None:
            await runtime.stop()
        subprocess.run(["umount", str(small)], check=False)
