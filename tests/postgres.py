"""A throwaway PostgreSQL server for tests: its own cluster in a temp directory, on a free
loopback port, started with the distribution's binaries and removed at the end.

PostgreSQL refuses to run as root, so as root the binaries run as the `postgres` system user
(`runuser`); as anyone else they run directly. The cluster trusts every local connection, and
its time zone is not UTC, so tests see any place that leans on the server's zone. The session
fixture `postgres` (tests/conftest.py) runs one for the whole test run.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from glob import glob
from pathlib import Path

import asyncpg

USER = "confbridge"
HOST = "127.0.0.1"
SERVER_TIMEZONE = "America/St_Johns"  # UTC-03:30 / -02:30: a half-hour offset shows mix-ups
SYSTEM_USER = "postgres"


def bin_dir() -> Path:
    """The newest installed PostgreSQL's bin directory (Debian keeps one per major version)."""
    candidates = [Path(p) for p in glob("/usr/lib/postgresql/*/bin") if Path(p, "pg_ctl").exists()]
    if not candidates:
        found = shutil.which("pg_ctl")
        if found is None:
            raise RuntimeError(
                "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/pg_ctl, no pg_ctl "
                "on PATH): run scripts/setup.sh --test"
            )
        return Path(found).parent

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", path.parent.name))

    return max(candidates, key=version)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


@dataclass
class PostgresServer:
    root: Path  # data/, the socket and the log live under it
    port: int
    binaries: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str) -> str:
        """A plain `postgresql://` URL, the form a deployment puts in data.database_url."""
        return f"postgresql://{USER}@{HOST}:{self.port}/{database}"

    async def create_database(self) -> str:
        """A new empty database with a unique name; returns its URL."""
        name = f"test_{uuid.uuid4().hex[:16]}"
        connection = await asyncpg.connect(
            host=HOST, port=self.port, user=USER, database="postgres"
        )
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()
        return self.url(name)

    # --- process control -----------------------------------------------------------------

    def run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.binaries / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", SYSTEM_USER, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

    def check(self, tool: str, *args: str) -> None:
        done = self.run(tool, *args)
        if done.returncode != 0:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            raise RuntimeError(
                f"{tool} {' '.join(args)} failed ({done.returncode}):\n"
                f"{done.stdout}{done.stderr}{log}"
            )

    def init(self) -> None:
        self.check(
            "initdb", "-D", str(self.data), "-A", "trust", "-U", USER,
            "-E", "UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip

    def start(self) -> None:
        options = " ".join(
            [
                f"-p {self.port}",
                f"-k {self.root}",  # the Unix socket, away from /var/run/postgresql
                f"-c listen_addresses={HOST}",
                f"-c timezone={SERVER_TIMEZONE}",
                "-c fsync=off",  # throwaway data: no need to wait for the disk
                "-c full_page_writes=off",
                "-c synchronous_commit=off",
            ]
        )
        self.check("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w",
                   "-t", "60", "start")  # fmt: skip

    def stop(self) -> None:
        self.run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")


def make_root() -> Path:
    """A private temp directory the server's user owns."""
    root = Path(tempfile.mkdtemp(prefix="confbridge-pg-"))
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            shutil.rmtree(root)
            raise RuntimeError(
                f"running as root but there is no {SYSTEM_USER!r} user to run PostgreSQL as "
                "(it refuses to run as root): install the postgresql package"
            ) from None
        os.chown(root, owner.pw_uid, owner.pw_gid)
    return root


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Start a fresh cluster; stop it and delete every file on exit."""
    root = make_root()
    try:
        server = PostgresServer(root=root, port=0, binaries=bin_dir())
        server.init()
        for attempt in range(3):  # another process may grab the free port before we bind it
            server.port = free_port()
            try:
                server.start()
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
