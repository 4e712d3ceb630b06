"""The whole product in one process: the bridge, the control plane and its HTTP API, sharing
one event loop (the API never blocks a mixer tick: database I/O is async)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from pathlib import Path

import structlog
import uvicorn

from bridge.config import Config
from bridge.server import BridgeServer
from control.api.app import create_app
from control.api.metrics import Metrics
from control.first_run import ensure_admin_token
from control.plane import Clock, ControlPlane, utcnow
from control.store import Store, open_store

log = structlog.get_logger(__name__)


def database_url(config: Config) -> str:
    if config.data.database_url:
        return config.data.database_url
    return f"sqlite:///{Path(config.data.dir).resolve() / 'confbridge.db'}"


class Runtime:
    """`await Runtime(config).start()`, then `await runtime.stop()`."""

    def __init__(self, config: Config, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock
        self.bridge = BridgeServer(config)
        self.store: Store | None = None
        self.plane: ControlPlane | None = None
        self.http_port = 0
        self._http: uvicorn.Server | None = None
        self._http_task: asyncio.Task[None] | None = None

    async def start(self) -> Runtime:
        await self.bridge.start()
        if not self.config.control.enabled:
            return self
        self.config = ensure_admin_token(self.config)  # a no-op when one is configured
        self.store = await open_store(database_url(self.config))
        port = self.bridge.control
        self.plane = ControlPlane(self.config, port, self.store, clock=self.clock or utcnow)
        metrics = Metrics(port)
        await self.plane.start()
        control = self.config.control
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((control.http_bind, control.http_port))
        self.http_port = listener.getsockname()[1]
        self._http = uvicorn.Server(
            uvicorn.Config(
                create_app(self.plane, metrics),
                log_level="warning",
                access_log=False,
                lifespan="off",
            )
        )
        self._http.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self._http_task = asyncio.create_task(self._http.serve(sockets=[listener]))
        while not self._http.started:
            if self._http_task.done():
                self._http_task.result()
            await asyncio.sleep(0.01)
        log.info("control.http_started", bind=control.http_bind, port=self.http_port)
        return self

    @property
    def base_url(self) -> str:
        return f"http://{self.config.control.http_bind}:{self.http_port}"

    async def stop(self) -> None:
        if self._http is not None and self._http_task is not None:
            self._http.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await self._http_task
        await self.bridge.stop()
        if self.plane is not None:
            await self.plane.stop()
        if self.store is not None:
            await self.store.close()


async def serve_forever(config: Config) -> None:
    """Run until SIGINT/SIGTERM, then hang up cleanly and close the database. The handlers go
    in first: a signal during start-up stops the bridge once it is up, never half-way."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runtime = await Runtime(config).start()
    await stop.wait()
    await runtime.stop()
