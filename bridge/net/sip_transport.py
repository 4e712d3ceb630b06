"""asyncio SIP transports: one UDP socket, one TCP listener and (with a certificate) one TLS
listener, feeding whole messages to a callback. Calls out over TLS open their own connection,
verified against the configured CA (`tls_client`); what is sent before it is up waits for it.

This layer only moves bytes. It never lets one bad packet or a failed send close a listening socket:
every destination is checked before `sendto` (asyncio closes a datagram transport on any exception
other than OSError) and every send error is swallowed and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import ssl
from collections.abc import Callable

import structlog

from bridge.sip.message import SipError, StreamFramer
from bridge.sip.transaction import Outgoing, Peer

log = structlog.get_logger()

MessageHandler = Callable[[bytes, Peer], None]


def is_sendable(host: str, port: int) -> bool:
    """True when (host, port) is an IP literal and a valid port: never resolve names on the loop."""
    if not 0 < port < 65536:
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: SipTransports) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[override]
        self.owner.deliver(data, Peer(addr[0], addr[1], "udp"))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: the peer is gone, the socket is fine.
        self.owner.send_errors += 1


class SipTransports:
    """The bridge's SIP sockets: UDP and TCP on the configured address."""

    def __init__(self, on_message: MessageHandler, max_size: int) -> None:
        self.on_message = on_message
        self.max_size = max_size
        self.udp: asyncio.DatagramTransport | None = None
        self.tcp_server: asyncio.Server | None = None
        self.tcp_connections: dict[tuple[str, int], asyncio.StreamWriter] = {}
        self.tls_server: asyncio.Server | None = None
        self.tls_connections: dict[tuple[str, int], asyncio.StreamWriter] = {}
        self.tls_client: ssl.SSLContext | None = None  # for calls out over TLS
        self.on_unreachable: Callable[[Peer], None] | None = None  # a connection failed
        self._connecting: dict[tuple[str, int], list[bytes]] = {}  # TLS not up yet: queued
        self._tasks: set[asyncio.Task[None]] = set()
        self.udp_port = 0
        self.tcp_port = 0
        self.tls_port = 0
        self.send_errors = 0
        self.handler_errors = 0

    async def start(
        self,
        bind: str,
        udp_port: int,
        tcp_port: int,
        tls: ssl.SSLContext | None = None,
        tls_port: int = 0,
    ) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self), local_addr=(bind, udp_port)
        )
        self.udp = transport
        self.udp_port = transport.get_extra_info("sockname")[1]
        self.tcp_server = await asyncio.start_server(
            self._serve_tcp, host=bind, port=tcp_port, reuse_address=True
        )
        self.tcp_port = self.tcp_server.sockets[0].getsockname()[1]
        if tls is not None:
            self.tls_server = await asyncio.start_server(
                self._serve_tls, host=bind, port=tls_port, reuse_address=True, ssl=tls,
                ssl_handshake_timeout=10.0,
            )  # fmt: skip
            self.tls_port = self.tls_server.sockets[0].getsockname()[1]

    def deliver(self, data: bytes, peer: Peer) -> None:
        """Hand one message to the SIP core; a bug there must not take the socket down."""
        try:
            self.on_message(data, peer)
        except Exception:
            self.handler_errors += 1
            log.exception("sip.handler_error", peer=f"{peer.host}:{peer.port}")

    def send(self, out: Outgoing) -> None:
        peer = out.peer
        if peer.transport == "tls":
            self._send_tls(out)
            return
        if peer.transport == "tcp":
            writer = self.tcp_connections.get((peer.host, peer.port))
            if writer is None or writer.is_closing():
                self.send_errors += 1
                return
            writer.write(out.data)
            return
        if self.udp is None or not is_sendable(peer.host, peer.port):
            self.send_errors += 1
            return
        try:
            self.udp.sendto(out.data, (peer.host, peer.port))
        except (OSError, ValueError, OverflowError, TypeError):
            self.send_errors += 1

    def _send_tls(self, out: Outgoing) -> None:
        key = (out.peer.host, out.peer.port)
        writer = self.tls_connections.get(key)
        if writer is not None and not writer.is_closing():
            writer.write(out.data)
            return
        if key in self._connecting:
            self._connecting[key].append(out.data)
            return
        if self.tls_client is None or not is_sendable(*key):
            self.send_errors += 1
            return
        self._connecting[key] = [out.data]
        task = asyncio.get_running_loop().create_task(self._connect_tls(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect_tls(self, key: tuple[str, int]) -> None:
        """A connection for calls out; the server's certificate must name the address we dial."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    key[0], key[1], ssl=self.tls_client, server_hostname=key[0]
                ),
                10.0,
            )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            self.send_errors += len(self._connecting.pop(key, []))
            log.info("sip.tls_connect_failed", peer=f"{key[0]}:{key[1]}", reason=str(exc))
            if self.on_unreachable is not None:
                self.on_unreachable(Peer(key[0], key[1], "tls"))
            return
        for data in self._connecting.pop(key, []):
            writer.write(data)
        await self._read_stream(reader, writer, Peer(key[0], key[1], "tls"), self.tls_connections)

    def send_keepalives(self) -> None:
        """A double CRLF (RFC 5626 ping) on every open TCP and TLS connection."""
        for writer in [*self.tcp_connections.values(), *self.tls_connections.values()]:
            if not writer.is_closing():
                writer.write(b"\r\n\r\n")

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        addr = writer.get_extra_info("peername")
        await self._read_stream(reader, writer, Peer(addr[0], addr[1], "tcp"), self.tcp_connections)

    async def _serve_tls(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        addr = writer.get_extra_info("peername")
        await self._read_stream(reader, writer, Peer(addr[0], addr[1], "tls"), self.tls_connections)

    async def _read_stream(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: Peer,
        connections: dict[tuple[str, int], asyncio.StreamWriter],
    ) -> None:
        """Frame one connection's messages until it closes; it is the way back to `peer`."""
        key = (peer.host, peer.port)
        connections[key] = writer
        framer = StreamFramer(self.max_size)
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                try:
                    messages = framer.feed(chunk)
                except SipError as exc:
                    log.info("sip.tcp_stream_error", peer=f"{key[0]}:{key[1]}", reason=exc.reason)
                    break
                for message in messages:
                    self.deliver(message, peer)
        except (ConnectionError, OSError, ssl.SSLError):
            pass
        finally:
            if connections.get(key) is writer:
                connections.pop(key, None)
            writer.close()

    def close(self) -> None:
        if self.udp is not None:
            self.udp.close()
        for server in (self.tcp_server, self.tls_server):
            if server is not None:
                server.close()
        for writer in [*self.tcp_connections.values(), *self.tls_connections.values()]:
            with contextlib.suppress(RuntimeError):  # a TLS writer of a closed loop
                writer.close()
        for task in self._tasks:
            task.cancel()
