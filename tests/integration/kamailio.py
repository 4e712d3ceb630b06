"""Run Debian's Kamailio as a record-routing proxy in front of the bridge in integration tests,
with the configuration shipped in configs/kamailio/ and a dispatcher list naming the bridge."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
from pathlib import Path

from tests.integration.baresip import free_sip_port
from tests.integration.harness import LOOPBACK, eventually

CONFIG = Path(__file__).parents[2] / "configs" / "kamailio" / "bridge-proxy.cfg"
_REQUEST = re.compile(r"proxy\.request method=(\S+) ruri=(\S+) from=(\S+)")


class Kamailio:
    """One Kamailio process on a free loopback port dispatching to `bridge_port`."""

    def __init__(self, workdir: Path, bridge_port: int) -> None:
        self.workdir = workdir / "kamailio"
        self.bridge_port = bridge_port
        self.port = free_sip_port()
        self.process: asyncio.subprocess.Process | None = None
        self._output = bytearray()
        self._reader: asyncio.Task[None] | None = None

    @property
    def output(self) -> str:
        return self._output.decode(errors="replace")

    def requests(self) -> list[tuple[str, str, str]]:
        """(method, Request-URI, source) of every request the proxy saw, in order."""
        return _REQUEST.findall(self.output)

    async def start(self) -> None:
        executable = shutil.which("kamailio")
        assert executable, "kamailio is missing: scripts/setup.sh --test installs Debian's"
        self.workdir.mkdir(parents=True, exist_ok=True)
        dispatcher = self.workdir / "dispatcher.list"
        dispatcher.write_text(f"1 sip:{LOOPBACK}:{self.bridge_port}\n")
        self.process = await asyncio.create_subprocess_exec(
            executable,
            "-f",
            str(CONFIG),
            "-DD",
            "-E",
            "-l",
            f"udp:{LOOPBACK}:{self.port}",
            "-A",
            f'DISPATCHER_LIST="{dispatcher}"',
            "-P",
            str(self.workdir / "kamailio.pid"),
            "-Y",
            str(self.workdir),
            "-w",
            str(self.workdir),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self._reader = asyncio.create_task(self._read())
        await eventually(lambda: "SO_RCVBUF is finally" in self.output or self._dead(), 10.0)
        assert not self._dead(), self.output

    def _dead(self) -> bool:
        return self.process is not None and self.process.returncode is not None

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while chunk := await self.process.stdout.read(4096):
            self._output += chunk

    async def stop(self) -> None:
        if self.process is None:
            return
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
