"""RTP sockets: one UDP socket per call, on an even port from the configured range.

The socket is bound synchronously (so a call can be answered at once with its port) and wrapped
in an asyncio transport afterwards; packets arriving in between wait in the kernel buffer.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

PacketHandler = Callable[[bytes, tuple[str, int]], None]


class PortRangeExhausted(RuntimeError):
    """No even port of the RTP range could be bound."""


class RtpPortPool:
    """Hands out even ports round-robin; a port in use by another process is skipped."""

    def __init__(self, port_min: int, port_max: int) -> None:
        self.ports = list(range(port_min, port_max + 1, 2))
        self.in_use: set[int] = set()
        self._next = 0

    def bind(self, host: str) -> socket.socket:
        """A non-blocking UDP socket bound to a free even port of the range."""
        for _ in range(len(self.ports)):
            port = self.ports[self._next]
            self._next = (self._next + 1) % len(self.ports)
            if port in self.in_use:
                continue
            sock = socket.socket(
                socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM
            )
            try:
                sock.bind((host, port))
            except OSError:
                sock.close()
                continue
            sock.setblocking(False)
            self.in_use.add(port)
            return sock
        raise PortRangeExhausted(f"no free RTP port in {self.ports[0]}..{self.ports[-1]}")

    def release(self, port: int) -> None:
        self.in_use.discard(port)


class _RtpProtocol(asyncio.DatagramProtocol):
    def __init__(self, on_packet: PacketHandler) -> None:
        self.on_packet = on_packet
        # The event loop looks `datagram_received` up on the protocol for every datagram: the
        # handler as an instance attribute is called directly, one Python call less per packet.
        self.datagram_received = on_packet  # type: ignore[method-assign,assignment]

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors from a vanished peer: keep the socket


class RtpSocket:
    """One call's RTP socket: receive into a handler, send without ever raising.

    `pool` is None in a media worker: the main process bound the port and gives it back.
    """

    def __init__(self, sock: socket.socket, pool: RtpPortPool | None) -> None:
        self.sock = sock
        self.port: int = sock.getsockname()[1]
        self.pool = pool
        self.transport: asyncio.DatagramTransport | None = None
        self.closed = False
        self.detached = False

    async def open(self, on_packet: PacketHandler) -> None:
        if self.closed or self.detached:
            return
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _RtpProtocol(on_packet), sock=self.sock
        )
        if self.closed or self.detached:
            transport.close()
            return
        self.transport = transport

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        # Per packet: try/except costs nothing unless something is raised, `contextlib.suppress`
        # costs a context manager every time.
        transport = self.transport
        if transport is None:
            return
        try:  # noqa: SIM105
            transport.sendto(data, addr)
        except (OSError, ValueError, OverflowError, TypeError):
            pass

    def detach(self) -> None:
        """Stop using the socket here: a media worker holds its own descriptor of it now.

        The port stays taken in the pool until `close`, when the call ends."""
        if self.detached or self.closed:
            return
        self.detached = True
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        else:
            self.sock.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        elif not self.detached:
            self.sock.close()
        if self.pool is not None:
            self.pool.release(self.port)
