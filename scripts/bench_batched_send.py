"""One `sendto` per RTP packet against `sendmmsg` batches (`bridge/net/mmsg.py`), in CPU time.

What the load generator's batching buys on the send path: `--calls` destination sockets on
loopback (drained now and then, as a receiver would), each sent one 172-byte packet per round,
first by a socket per call with `sendto` and a header built in Python (the old generator),
then by one socket with a batch whose headers are written as arrays. Loopback delivery into
the receiving socket is charged to the sender, so both include it. Not a test.

    .venv/bin/python scripts/bench_batched_send.py [--calls 500] [--rounds 200]
"""

from __future__ import annotations

import argparse
import socket
import time

import numpy as np

from bridge.net.mmsg import BatchSocket, ipv4
from bridge.rtp.packet import RtpSender

LOCAL = "127.0.0.1"


def udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOCAL, 0))
    sock.setblocking(False)
    return sock


def drain(sinks: list[socket.socket]) -> None:
    for sink in sinks:
        try:
            while True:
                sink.recv(2048)
        except BlockingIOError:
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    calls, rounds = args.calls, args.rounds
    sinks = [udp() for _ in range(calls)]
    ports = [sink.getsockname()[1] for sink in sinks]
    senders = [udp() for _ in range(calls)]
    rtp = [RtpSender() for _ in range(calls)]
    payload = b"\xff" * 160
    started = time.process_time()
    for round_ in range(rounds):
        for i in range(calls):
            try:  # noqa: SIM105 - as the old generator did: no context manager per packet
                senders[i].sendto(rtp[i].packet(payload), (LOCAL, ports[i]))
            except OSError:
                pass
        if round_ % 10 == 0:
            drain(sinks)
    one_by_one = time.process_time() - started
    batch = BatchSocket(senders[0], batch=min(calls, 512), size=256)
    hosts = np.full(calls, ipv4(LOCAL), np.uint32)
    destinations = np.array(ports, np.uint16)
    header = batch.tx.data[:, :12].view(np.uint8)
    started = time.process_time()
    for round_ in range(rounds):
        for first in range(0, calls, batch.batch):
            count = min(batch.batch, calls - first)
            header[:count, 0] = 0x80
            header[:count, 2:4] = round_ & 0xFF
            batch.send(
                count, hosts[first : first + count], destinations[first : first + count], 172
            )
        if round_ % 10 == 0:
            drain(sinks)
    batched = time.process_time() - started
    packets = calls * rounds
    print(f"{packets} packets to {calls} sockets, CPU per packet (receiver's delivery included):")
    print(f"  sendto, one per packet:  {one_by_one / packets * 1e6:.2f} us")
    print(f"  sendmmsg batches:        {batched / packets * 1e6:.2f} us ({batch.dropped} dropped)")


if __name__ == "__main__":
    main()
