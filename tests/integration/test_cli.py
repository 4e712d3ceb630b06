"""The `confbridge` command as a user runs it: a real process, real config files, real sockets."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import tempfile
from pathlib import Path

import httpx
import pytest

from tests.integration.harness import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def bridge_env(port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONFBRIDGE_")}
    env.update(
        CONFBRIDGE_SIP_BIND="127.0.0.1",
        CONFBRIDGE_SIP_ADVERTISE="127.0.0.1",
        CONFBRIDGE_SIP_UDP_PORT=str(port),
        CONFBRIDGE_SIP_TCP_PORT=str(port),
        CONFBRIDGE_LOG_FORMAT="json",
        CONFBRIDGE_CONTROL_HTTP_PORT="0",
        CONFBRIDGE_DATA_DIR=tempfile.mkdtemp(prefix="confbridge-test-"),
    )
    env.update(extra)
    return env


async def run_cli(*args: str, env: dict[str, str], timeout: float = 20) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "control.confbridge",
        *args,
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, out.decode()


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[sip]\nt1_ms = 'abc'\n", "sip.t1_ms"),
        ("[rtp]\nport_min = 20001\n", "rtp.port_min"),
        ("[rooms]\nmax_participant = 5\n", "rooms.max_participant"),
        ("[sip\n", "TOML"),
    ],
)
async def test_bad_config_stops_the_start_naming_the_key(
    tmp_path: Path, toml: str, key: str
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(toml)
    code, output = await run_cli("serve", "--config", str(config), env=bridge_env(free_port()))
    assert code == 2
    assert key in output, output


async def test_bad_environment_value_names_the_variable() -> None:
    code, output = await run_cli(
        "serve",
        "--config",
        str(ROOT / "configs/default.toml"),
        env=bridge_env(free_port(), CONFBRIDGE_LOG_FORMAT="xml"),
    )
    assert code == 2 and "CONFBRIDGE_LOG_FORMAT" in output, output


async def test_serve_answers_options_and_stops_cleanly_on_sigterm() -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "control.confbridge",
        "serve",
        "--config",
        str(ROOT / "configs/default.toml"),
        env=bridge_env(port),
        cwd=ROOT,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    try:
        started, worker_pids = b"", []
        while b'"bridge.started"' not in started:  # after its media workers started
            started = await asyncio.wait_for(process.stderr.readline(), 20)
            assert started, "the bridge exited before it started"
            if b'"worker.spawned"' in started:
                worker_pids.append(json.loads(started)["pid"])
        assert json.loads(started)["media_workers"] == len(worker_pids)
        while b'"control.http_started"' not in (line := await process.stderr.readline()):
            assert line, "the bridge exited before its HTTP API started"
        http_port = json.loads(line)["port"]
        async with httpx.AsyncClient(trust_env=False) as client:
            health = await client.get(f"http://127.0.0.1:{http_port}/v1/health")
            assert health.status_code == 200 and health.json()["status"] == "ok"
        loop = asyncio.get_running_loop()
        answers: asyncio.Queue[bytes] = asyncio.Queue()

        class Client(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[override]
                answers.put_nowait(data)

        transport, _ = await loop.create_datagram_endpoint(Client, local_addr=("127.0.0.1", 0))
        options = (
            f"OPTIONS sip:ping@127.0.0.1:{port} SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKcli1;rport\r\nMax-Forwards: 70\r\n"
            "From: <sip:cli@127.0.0.1>;tag=1\r\nTo: <sip:ping@127.0.0.1>\r\nCall-ID: cli1\r\n"
            "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        transport.sendto(options, ("127.0.0.1", port))
        answer = await asyncio.wait_for(answers.get(), 5)
        transport.close()
        assert answer.startswith(b"SIP/2.0 200 ")
        assert b"Allow: " in answer
    finally:
        process.send_signal(signal.SIGTERM)
        rest = await asyncio.wait_for(process.stderr.read(), 20)
        await process.wait()
    assert process.returncode == 0
    assert b'"bridge.stopped"' in rest
    for pid in worker_pids:  # no media worker outlives the bridge
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
