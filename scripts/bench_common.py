"""Shared helpers for the benchmarks: run the real bridge as a subprocess and read its JSON logs.

The bridge runs in its own process (as in production) so its CPU time is its own: we read it live
from /proc for phases, and from `bridge.stopped` for the whole run. Loopback only, free ports only.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bridge.tools.loadmetrics import process_cpu
from bridge.tools.ports import free_port

LOOPBACK = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent
CONFBRIDGE = REPO / ".venv" / "bin" / "confbridge"
CONFIG = REPO / "configs" / "default.toml"


def free_rtp_range(size: int) -> tuple[int, int]:
    """An even-aligned RTP port range of `size` ports that is free right now (UDP) on loopback.

    Probing every port is cheap and avoids a bridge that fails half-way through a benchmark
    because another test on the shared machine holds a port in its range.
    """
    for _ in range(50):
        base = random.randrange(30000, 60000 - size, 2)
        if all(_udp_free(port) for port in range(base, base + size)):
            return base, base + size - 2
    raise RuntimeError(f"no free RTP range of {size} ports")


def _udp_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def self_cpu_seconds() -> float:
    """This process's CPU seconds (user + system): the load generator's own cost."""
    times = os.times()
    return times.user + times.system


class BridgeProcess:
    """`confbridge serve` on loopback with JSON logs; `start()`, then `stop()` returns its events.

    stderr is read by a thread so the pipe never fills, whatever loop the caller runs.
    """

    def __init__(
        self,
        *,
        max_participants: int = 1000,
        rtp_ports: int = 2000,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.rtp_min, self.rtp_max = free_rtp_range(rtp_ports)
        self.data_dir = tempfile.TemporaryDirectory(prefix="confbridge-bench-")
        self.env = {
            **os.environ,
            "CONFBRIDGE_SIP_BIND": LOOPBACK,
            "CONFBRIDGE_SIP_ADVERTISE": LOOPBACK,
            "CONFBRIDGE_SIP_UDP_PORT": str(self.port),
            "CONFBRIDGE_SIP_TCP_PORT": str(self.port),
            "CONFBRIDGE_RTP_PORT_MIN": str(self.rtp_min),
            "CONFBRIDGE_RTP_PORT_MAX": str(self.rtp_max),
            "CONFBRIDGE_ROOMS_MAX_PARTICIPANTS": str(max_participants),
            "CONFBRIDGE_LOG_FORMAT": "json",
            "CONFBRIDGE_LOG_LEVEL": "info",
            "CONFBRIDGE_DATA_DIR": self.data_dir.name,
            **(extra_env or {}),
        }
        self.events: list[dict[str, Any]] = []
        self.raw_lines: list[str] = []
        self.process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 15.0) -> BridgeProcess:
        """Spawn the bridge and wait for `bridge.started`; raise with its stderr if it dies."""
        self.process = subprocess.Popen(
            [str(CONFBRIDGE), "serve", "--config", str(CONFIG)],
            cwd=self.data_dir.name,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.find("bridge.started"):
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.kill()
        tail = "\n".join(self.raw_lines[-20:])
        raise RuntimeError(f"bridge did not start:\n{tail}")

    def _read(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        for line in self.process.stderr:
            text = line.decode(errors="replace").rstrip()
            try:
                event = json.loads(text)
            except ValueError:
                event = None
            with self._lock:
                self.raw_lines.append(text)
                if isinstance(event, dict):
                    self.events.append(event)

    def find(self, name: str) -> list[dict[str, Any]]:
        """Every logged event called `name` so far, in order."""
        with self._lock:
            return [e for e in self.events if e.get("event") == name]

    def cpu_seconds(self) -> float:
        """The live bridge's CPU seconds so far (user + system), its media workers' included."""
        cpu = process_cpu(self.pid)
        if cpu is None:
            raise RuntimeError(f"the bridge (pid {self.pid}) is gone")
        return cpu

    def stop(self, timeout: float = 20.0) -> list[dict[str, Any]]:
        """SIGTERM (the bridge logs its stats and BYEs every call), wait, return all events."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                print("bridge ignored SIGTERM; killing it", file=sys.stderr)
                self.kill()
        if self._reader is not None:
            self._reader.join(5.0)
        self.data_dir.cleanup()
        with self._lock:
            return list(self.events)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def warnings(self) -> list[dict[str, Any]]:
        """Events logged at warning level or above: a benchmark prints a count of them."""
        with self._lock:
            return [e for e in self.events if e.get("level") in ("warning", "error", "critical")]


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A plain fixed-width table (right-aligned numbers), pasteable into an issue note."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for index, row in enumerate(cells):
        print("  ".join(value.rjust(width) for value, width in zip(row, widths, strict=True)))
        if index == 0:
            print("  ".join("-" * width for width in widths))


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)
