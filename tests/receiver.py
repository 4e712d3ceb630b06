"""A minimal webhook receiver for tests: a real HTTP/1.1 server on loopback."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Receiver:
    """A minimal HTTP/1.1 server: records each request, answers 500 to the first `fail` ones."""

    fail: int = 0
    requests: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    server: asyncio.Server | None = None
    port: int = 0

    @property
    def delivered(self) -> list[dict[str, Any]]:
        return [body for status, _, body in self.requests if status == 204]

    async def start(self, port: int = 0) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        path = head[0].split(" ")[1]
        headers = dict(line.lower().split(": ", 1) for line in head[1:] if ": " in line)
        body = json.loads(await reader.readexactly(int(headers["content-length"])))
        status = 204
        if self.fail > 0:
            self.fail -= 1
            status = 500
        self.requests.append((status, path, body))
        reason = "No Content" if status == 204 else "Internal Server Error"
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        writer.close()
