"""Micro-benchmark: the per-packet Python work of a media worker, in nanoseconds per packet.

Not a test, and it starts no bridge: one process, one uvloop loop, real UDP sockets on 127.0.0.1.

- receive: what uvloop does per datagram once it has the bytes: the socket's protocol
  `datagram_received` -> the worker's handler (as `bridge.mixing.workers.process` makes it) ->
  `Participant.receive_rtp` -> parse -> `JitterBuffer.push`. Packets are real RTP built by an
  `RtpSender`, and each comes with a fresh source tuple, as uvloop gives one. Like a worker, a
  "tick" feeds one packet to each of `--participants` participants (timed), then pops every
  jitter buffer (not timed: that is the tick's work, not the packet's).
- send: `Participant.send_payload` as `Room.tick` calls it: `RtpSender.packet` + `RtpSocket.send`
  on a transport from `loop.create_datagram_endpoint(sock=...)`, to a loopback socket nobody
  reads (once its buffer is full the kernel drops what comes: constant kernel work). Also the
  parts alone, and `transport.sendto` by itself: the floor Python cannot go below.

Best of `--repeat` runs (a loaded machine reads slower; gc stays on, as in a worker).
Run with `.venv/bin/python scripts/bench_packet_path.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import time
from collections.abc import Callable

import uvloop

from bridge.media.g711 import PCMU
from bridge.mixing.participant import Participant
from bridge.net.rtp_port import RtpSocket
from bridge.rtp.jitter import JitterBuffer
from bridge.rtp.packet import RtpSender

LOOPBACK = "127.0.0.1"
PAYLOAD = bytes(range(160))


def _bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOOPBACK, 0))
    sock.setblocking(False)
    return sock


def _participant(index: int, remote: tuple[str, int], send: Callable) -> Participant:
    return Participant(
        id=f"p{index}",
        call_key=f"k{index}",
        room="bench",
        caller="bench",
        display_name="",
        codec=PCMU,
        remote=remote,
        signalling_host=LOOPBACK,
        send=send,
        jitter=JitterBuffer(2, 3),
    )


def _handler(participant: Participant, loop: asyncio.AbstractEventLoop) -> Callable:
    """The worker's per-socket packet handler, made as `Worker._add` makes it."""
    receive_rtp, now = participant.receive_rtp, loop.time
    return lambda data, source: receive_rtp(data, source, now())


def _fresh_address(port: int) -> tuple[str, int]:
    """A new tuple and a new str, as uvloop makes for each datagram."""
    return (LOOPBACK.encode().decode(), port)


async def bench_receive(participants: int, ticks: int) -> float:
    loop = asyncio.get_running_loop()
    members, protocols, senders, sockets = [], [], [], []
    for i in range(participants):
        member = _participant(i, (LOOPBACK, 20000 + i), lambda data, address: None)
        rtp = RtpSocket(_bound_socket(), pool=None)
        await rtp.open(_handler(member, loop))
        assert rtp.transport is not None
        members.append(member)
        protocols.append(rtp.transport.get_protocol().datagram_received)
        senders.append(RtpSender(payload_type=0))
        sockets.append(rtp)
    pops = [member.jitter.pop for member in members]
    ports = [member.remote[1] for member in members]
    elapsed = 0
    clock = time.perf_counter_ns
    for _ in range(ticks):
        batch = [
            (receive, sender.packet(PAYLOAD), _fresh_address(port))
            for receive, sender, port in zip(protocols, senders, ports, strict=True)
        ]
        start = clock()
        for receive, data, source in batch:
            receive(data, source)
        elapsed += clock() - start
        for pop in pops:
            pop()
    for member in members:
        assert member.counters.packets_in == ticks and member.counters.wrong_source == 0
        assert member.jitter.stats.played >= ticks - 3
    for rtp in sockets:
        rtp.close()
    return elapsed / (participants * ticks)


async def bench_send(participants: int, ticks: int) -> dict[str, float]:
    sink = _bound_socket()
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    destination = sink.getsockname()
    members, sockets = [], []
    for i in range(participants):
        rtp = RtpSocket(_bound_socket(), pool=None)
        await rtp.open(lambda data, source: None)
        member = _participant(i, destination, rtp.send)
        member.latched = (LOOPBACK, destination[1])
        members.append(member)
        sockets.append(rtp)
    data = RtpSender().packet(PAYLOAD)
    send_payloads = [member.send_payload for member in members]
    packets = [member.sender.packet for member in members]
    socket_sends = [rtp.send for rtp in sockets]
    transport_sends = [rtp.transport.sendto for rtp in sockets]  # type: ignore[union-attr]
    clock = time.perf_counter_ns

    def timed(body: Callable[[], None]) -> float:
        elapsed = 0
        for _ in range(ticks):
            start = clock()
            body()
            elapsed += clock() - start
        return elapsed / (participants * ticks)

    def send_path() -> None:
        for send_payload in send_payloads:
            send_payload(PAYLOAD)

    def packet_only() -> None:
        for packet in packets:
            packet(PAYLOAD, payload_type=0)

    def socket_send_only() -> None:
        for send in socket_sends:
            send(data, destination)

    def transport_only() -> None:
        for sendto in transport_sends:
            sendto(data, destination)

    for _ in range(20):  # fill the sink's buffer: from here on the kernel drops
        transport_only()
    results = {
        "send: send_payload (packet + RtpSocket.send)": timed(send_path),
        "send: RtpSender.packet alone": timed(packet_only),
        "send: RtpSocket.send alone": timed(socket_send_only),
        "send: transport.sendto alone (floor)": timed(transport_only),
    }
    for rtp in sockets:
        rtp.close()
    sink.close()
    return results


async def run(participants: int, ticks: int, repeat: int) -> dict[str, float]:
    best: dict[str, float] = {}
    for _ in range(repeat):
        receive = await bench_receive(participants, ticks)
        results = {"receive: datagram_received -> jitter push": receive}
        results.update(await bench_send(participants, ticks))
        for name, value in results.items():
            best[name] = min(best.get(name, value), value)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=200)
    parser.add_argument("--ticks", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    best = uvloop.run(run(args.participants, args.ticks, args.repeat))
    width = max(len(name) for name in best)
    for name, value in best.items():
        print(f"{name:<{width}}  {value:8.0f} ns/packet")


if __name__ == "__main__":
    main()
