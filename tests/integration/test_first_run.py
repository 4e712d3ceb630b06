"""Issue 15, item 9: with no admin token configured, the first start generates one under the
data directory (mode 0600), prints where it is, and the admin API works with it; later starts
reuse it; a configured token wins; a spoiled file stops the start with a message naming it."""

from __future__ import annotations

import dataclasses
import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from bridge.config import ConfigError
from control.first_run import TOKEN_FILE
from control.runtime import Runtime
from tests.integration.harness import ADMIN_TOKEN, loopback_config, with_control

pytestmark = pytest.mark.integration


def unconfigured(data: Path):  # type: ignore[no-untyped-def]
    config = with_control(loopback_config(), data)
    return dataclasses.replace(config, control=dataclasses.replace(config.control, admin_token=""))


async def admin_status(runtime: Runtime, token: str) -> int:
    async with httpx.AsyncClient(base_url=runtime.base_url, trust_env=False) as client:
        reply = await client.get(
            "/v1/admin/applications", headers={"Authorization": f"Bearer {token}"}
        )
        return reply.status_code


async def test_first_start_generates_the_token_and_later_starts_reuse_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    runtime = await Runtime(unconfigured(data)).start()
    try:
        path = data / TOKEN_FILE
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        token = path.read_text().strip()
        assert len(token) >= 32
        assert str(path.resolve()) in capsys.readouterr().err
        assert await admin_status(runtime, token) == 200
        assert await admin_status(runtime, token + "x") == 401
        assert await admin_status(runtime, "not-the-token") == 401
    finally:
        await runtime.stop()

    os.chmod(path, 0o644)  # loosened by hand: tightened again at start
    runtime = await Runtime(unconfigured(data)).start()
    try:
        assert path.read_text().strip() == token
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert "generated" not in capsys.readouterr().err
        assert await admin_status(runtime, token) == 200
    finally:
        await runtime.stop()


async def test_a_configured_token_wins_and_no_file_is_written(tmp_path: Path) -> None:
    runtime = await Runtime(with_control(loopback_config(), tmp_path / "data")).start()
    try:
        assert not (tmp_path / "data" / TOKEN_FILE).exists()
        assert await admin_status(runtime, ADMIN_TOKEN) == 200
    finally:
        await runtime.stop()


async def test_a_spoiled_token_file_stops_the_start_naming_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / TOKEN_FILE).write_text("short\n")
    runtime = Runtime(unconfigured(data))
    with pytest.raises(ConfigError, match="admin_token: the admin token must be 16"):
        await runtime.start()
    await runtime.stop()


def test_confbridge_serve_says_where_the_token_is(tmp_path: Path) -> None:
    """The README's serve command on a spoiled file: exit 2 with the file named (a good file
    is the test above: starting the whole server here would only repeat it)."""
    data = tmp_path / "data"
    data.mkdir()
    (data / TOKEN_FILE).write_text("has spaces in it, not a token\n")
    env = {**os.environ, "CONFBRIDGE_DATA_DIR": str(data), "CONFBRIDGE_SIP_UDP_PORT": "0",
           "CONFBRIDGE_SIP_TCP_PORT": "0", "CONFBRIDGE_CONTROL_HTTP_PORT": "0"}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "control.confbridge", "serve"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"{data / TOKEN_FILE}: the admin token must be 16+ characters" in done.stderr
