"""Issue 15, item 8: schemathesis against the running bridge's /openapi.json: every operation,
generated inputs (valid and invalid), with a tenant's token and then the admin token; no answer
may be a 5xx. CI runs the examples, fuzzing and stateful phases (about 2 minutes); the coverage
phase (every boundary value of every field, over 4 minutes on its own) runs when
CONFBRIDGE_SCHEMATHESIS_PHASES names it, e.g. `CONFBRIDGE_SCHEMATHESIS_PHASES=examples,coverage,
fuzzing,stateful pytest tests/integration/test_schemathesis.py`, with a larger EXAMPLES for the
long run."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import shutil
import sys
from pathlib import Path

import httpx
import pytest

from control.runtime import Runtime
from tests.integration.harness import ADMIN_TOKEN, loopback_config, with_control

pytestmark = [pytest.mark.integration, pytest.mark.heavy]

EXAMPLES = 3  # per operation and phase in CI; the note's run used 15 (2,231 cases)
PHASES = os.environ.get("CONFBRIDGE_SCHEMATHESIS_PHASES", "examples,fuzzing,stateful")
TESTED = re.compile(r"Tested:\s+(\d+)")


async def schemathesis(url: str, token: str, workdir: Path, *only: str) -> tuple[int, str]:
    command = shutil.which("schemathesis") or str(Path(sys.executable).parent / "schemathesis")
    process = await asyncio.create_subprocess_exec(
        command, "run", f"{url}/openapi.json", "--checks", "not_a_server_error",
        "--header", f"Authorization: Bearer {token}", "--max-examples", str(EXAMPLES),
        "--seed", "15", "--phases", PHASES, "--request-timeout", "20", "--no-color", *only,
        cwd=workdir, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), 900)
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace")


async def test_no_operation_answers_5xx(tmp_path: Path) -> None:
    config = with_control(loopback_config(), tmp_path / "data")
    control = dataclasses.replace(config.control, auth_failure_limit=100_000)
    recording = dataclasses.replace(config.recording, dir=str(tmp_path / "recordings"))
    runtime = await Runtime(
        dataclasses.replace(config, control=control, recording=recording)
    ).start()
    try:
        async with httpx.AsyncClient(base_url=runtime.base_url, trust_env=False) as client:
            made = await client.post(
                "/v1/admin/applications/acme/tokens",
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            )
            tenant = made.json()["token"]
        admin_only = ("--include-path-regex", "^/v1/admin")
        for token, only in ((tenant, ()), (ADMIN_TOKEN, admin_only)):
            code, output = await schemathesis(runtime.base_url, token, tmp_path, *only)
            tail = "\n".join(output.splitlines()[-40:])
            assert code == 0, tail  # any 5xx fails the run
            tested = TESTED.search(output)
            assert tested is not None and int(tested.group(1)) > (0 if only else 50), tail
        async with httpx.AsyncClient(base_url=runtime.base_url, trust_env=False) as client:
            assert (await client.get("/v1/health")).status_code == 200
    finally:
        await runtime.stop()
