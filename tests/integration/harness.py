"""Helpers for tests that run the real bridge on loopback against real SIP peers."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import shutil
import socket
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bridge.config import (
    AnnouncementsConfig,
    Config,
    MediaConfig,
    RoomDefinition,
    RoomsConfig,
    RtpConfig,
    SipConfig,
)
from bridge.tools.ports import free_port

LOOPBACK = "127.0.0.1"
SCENARIOS = Path(__file__).parent / "scenarios"


def loopback_config(
    *,
    sip: dict[str, Any] | None = None,
    rtp: dict[str, Any] | None = None,
    rooms: dict[str, Any] | None = None,
    announcements: bool = False,
    room: tuple[RoomDefinition, ...] = (),
    media_workers: int | None = None,
    media: dict[str, Any] | None = None,
    rtp_ports: int = 400,
) -> Config:
    """A loopback-only configuration on free ports with a private RTP range; `sip`, `rtp`,
    `rooms` and `media` override single keys of their section. Announcements (prompts and
    chimes the bridge plays by itself) are off unless asked for, so tone measurements stay
    clean.

    Rooms are mixed in-process unless `media_workers` says otherwise, or the environment's
    CONFBRIDGE_TEST_MEDIA_WORKERS does (to run the whole suite over media workers), and on
    per-call RTP sockets unless CONFBRIDGE_TEST_RTP_SHARED_PORT=1 (workers' shared ports).
    The private RTP range has `rtp_ports` even ports at a random place in 30000-58800 (where
    another test's bridge may have its own): a test that nearly fills it asks for more."""
    if media_workers is None:
        media_workers = int(os.environ.get("CONFBRIDGE_TEST_MEDIA_WORKERS", "0"))
    if os.environ.get("CONFBRIDGE_TEST_RTP_SHARED_PORT") == "1":  # the suite on shared ports
        rtp = {"shared_port": True, **(rtp or {})}
    port = free_port()
    rtp_base = random.randrange(30000, 58800 - 2 * rtp_ports, 2)
    return Config(
        sip=SipConfig(
            **{
                "bind": LOOPBACK,
                "advertise": LOOPBACK,
                "udp_port": port,
                "tcp_port": port,
                **(sip or {}),
            }
        ),
        rtp=RtpConfig(
            **{"port_min": rtp_base, "port_max": rtp_base + 2 * rtp_ports - 2, **(rtp or {})}
        ),
        rooms=RoomsConfig(**(rooms or {})),
        announcements=AnnouncementsConfig(
            only_participant=announcements, join_leave_tones=announcements
        ),
        room=room,
        media=MediaConfig(**{"workers": media_workers, **(media or {})}),
    )


@dataclasses.dataclass
class SippResult:
    returncode: int
    stdout: str
    stderr: str
    successful: int
    failed: int


def _count(stats_csv: Path, column: str) -> int:
    lines = stats_csv.read_text().strip().splitlines()
    header = lines[0].split(";")
    values = lines[-1].split(";")
    return int(values[header.index(column)])


async def run_sipp(
    bridge_port: int | None,
    args: Sequence[str],
    workdir: Path,
    timeout: float = 120.0,
    port: int | None = None,
    local_ip: str = LOOPBACK,
) -> SippResult:
    """Run SIPp on loopback, against the bridge (`bridge_port`) or as a callee the bridge
    dials (None: SIPp listens on `port`); counts come from its statistics file."""
    sipp = shutil.which("sipp")
    assert sipp, "SIPp is missing: scripts/setup.sh --test installs Debian's sip-tester"
    stats = workdir / f"sipp-{random.randrange(1 << 30)}.csv"
    command = [
        sipp,
        *([f"{LOOPBACK}:{bridge_port}"] if bridge_port is not None else []),
        "-i",
        local_ip,
        "-p",
        str(port or free_port()),
        "-mp",
        str(free_port((socket.SOCK_DGRAM,))),
        "-nostdin",
        "-trace_stat",
        "-stf",
        str(stats),
        "-fd",
        "1",
        "-timeout",
        f"{int(timeout)}s",
        "-timeout_error",
        *args,
    ]
    process = await asyncio.create_subprocess_exec(
        *command, cwd=workdir, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout + 30)
    assert process.returncode is not None
    successful = _count(stats, "SuccessfulCall(C)") if stats.exists() else 0
    failed = _count(stats, "FailedCall(C)") if stats.exists() else 0
    return SippResult(
        process.returncode,
        out.decode(errors="replace"),
        err.decode(errors="replace"),
        successful,
        failed,
    )


ADMIN_TOKEN = "admin-secret-0123456789"


def with_control(config: Config, data_dir: Path) -> Config:
    """`config` plus the control plane: HTTP on a free loopback port, the admin token, and the
    SQLite file under `data_dir` (reuse the directory to simulate a restart)."""
    return dataclasses.replace(
        config,
        control=dataclasses.replace(
            config.control, http_bind=LOOPBACK, http_port=0, admin_token=ADMIN_TOKEN
        ),
        data=dataclasses.replace(config.data, dir=str(data_dir)),
    )


class FakeClock:
    """The control plane's wall clock, moved by the test (the media clock stays real)."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


async def eventually(condition: Callable[[], Any], timeout: float = 20.0) -> None:
    """Wait until `condition()` is true (polling every 50 ms), or fail the test."""
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def sipp_callee(
    workdir: Path, port: int, calls: int = 1, timeout: float = 60.0
) -> asyncio.Task[SippResult]:
    """A SIPp callee answering `calls` calls (`uas_answer.xml`) on `port`, for the bridge to
    dial; bound and listening when this returns. Await the task for its counts."""
    args = ["-sf", str(SCENARIOS / "uas_answer.xml"), "-m", str(calls)]
    task = asyncio.create_task(run_sipp(None, args, workdir, timeout=timeout, port=port))
    await sipp_listening(port)
    return task


async def sipp_listening(port: int, timeout: float = 15.0) -> None:
    """Wait until a SIPp callee has bound its UDP port, so the bridge's INVITE does not race
    SIPp's start-up (a lost first INVITE plus retransmission back-off can outlast a short ring
    timeout on a slow machine)."""
    for _ in range(int(timeout / 0.05)):
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return  # taken: SIPp is listening
        finally:
            probe.close()
        await asyncio.sleep(0.05)
    raise AssertionError(f"SIPp did not bind UDP port {port} in {timeout} s")
