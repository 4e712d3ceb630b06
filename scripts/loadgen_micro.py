"""Micro-benchmark: the load generator's per-packet Python, in microseconds per packet.

Why: at 2,000 participants the generator costs about what the bridge does; this times its three
hot paths on synthetic traffic sized like that, in one process, with no bridge and no system
call, so the compiled path (`bridge/tools/_loadcols.c`) and numpy's can be compared directly:

- stats: `ReceiveStats.receive`, batches of `--batch` packets (RFC 3550 loss, jitter, lateness).
- receive: `Streams.receive` without `recvmmsg`: the receive buffer is filled as the kernel
  would (bytes, source ports, lengths, time stamps); the fill alone is timed and taken off.
- digest: `Streams.digest` of what `receive` left, every `--digest` packets (decode, level at
  BURST_HZ, burst onsets, the analysis window's audio, the window covering all of it).
- send: `Streams._send`'s building, `--send` calls per batch (one pacer slot), 1 call in 20 a
  marker, with `sendmmsg` replaced by nothing.

Each call's packets come once per 20 ms round in a shuffled order, with a little jitter, some
loss and reordering. Best of `--repeat` runs. Run with `.venv/bin/python scripts/loadgen_micro.py`
(a few seconds); `CONFBRIDGE_NATIVE_LOAD=0` has no effect here: both paths are timed.
"""

from __future__ import annotations

import argparse
import socket
import time
from collections.abc import Callable

import numpy as np

from bridge.net.mmsg import SO_TIMESTAMPNS
from bridge.tools import loadnative
from bridge.tools.loadplan import BURST_HZ, amplitude, burst_samples, tone_frames
from bridge.tools.loadstreams import PACKET_BYTES, ReceiveStats, Streams

BRIDGE_PORT0 = 20000


def traffic(calls: int, rounds: int, seed: int = 1) -> dict[str, np.ndarray]:
    """`rounds` 20 ms rounds of every call's packet, in arrival order, as packed RTP."""
    rng = np.random.default_rng(seed)
    rows = np.concatenate([rng.permutation(calls) for _ in range(rounds)])
    k = np.repeat(np.arange(rounds), calls)
    keep = rng.random(rows.size) > 0.01
    arrival = 0.02 * k + rng.exponential(0.002, rows.size)
    rows, k, arrival = rows[keep], k[keep], arrival[keep]
    order = np.argsort(arrival, kind="stable")
    rows, k, arrival = rows[order], k[order], arrival[order] + 1000.0
    seq0 = rng.integers(0, 1 << 16, calls)
    ts0 = rng.integers(0, 1 << 32, calls, dtype=np.uint64)
    tone = np.frombuffer(b"".join(tone_frames(440, amplitude(2), "PCMU")), np.uint8)
    burst = np.frombuffer(b"".join(tone_frames(BURST_HZ, amplitude(2), "PCMU")), np.uint8)
    frames, bursts = tone.reshape(-1, 160), burst.reshape(-1, 160)
    packets = np.zeros((rows.size, PACKET_BYTES), np.uint8)
    packets[:, 0], packets[:, 1] = 0x80, 0
    packets[:, 2:4] = ((seq0[rows] + k) & 0xFFFF).astype(">u2").view(np.uint8).reshape(-1, 2)
    ts = (ts0[rows] + 160 * k.astype(np.uint64)) & 0xFFFF_FFFF
    packets[:, 4:8] = ts.astype(">u4").view(np.uint8).reshape(-1, 4)
    bursting = (k % 50) < 3  # 60 ms of burst a second
    payload = np.where(bursting[:, None], bursts[k % len(bursts)], frames[k % len(frames)])
    packets[:, 12:] = payload
    return {"rows": rows, "arrival": arrival, "packets": packets}


def streams_for(calls: int, native: bool) -> Streams:
    streams = Streams(calls, "PCMU", native=native)
    frames = tone_frames(440, amplitude(2), "PCMU")
    for row in range(calls):
        streams.add(frames, burst_samples(amplitude(2)) if row % 20 == 0 else None)
        streams.start(row, ("127.0.0.1", BRIDGE_PORT0 + row), first=0.0, first_burst=0.5)
    streams.io.send = lambda count, *rest: count  # type: ignore[method-assign]
    streams.window = (0.0, float("inf"))
    return streams


class Filler:
    """Stands for `recvmmsg`: the next `batch` packets of `data` into `streams`' rx buffer."""

    def __init__(self, streams: Streams, data: dict[str, np.ndarray], batch: int) -> None:
        self.streams, self.data, self.batch, self.at = streams, data, batch, 0
        rx = streams.io.rx
        rx.headers["controllen"] = 32
        rx.controls["len"], rx.controls["level"] = 32, socket.SOL_SOCKET
        rx.controls["type"] = SO_TIMESTAMPNS
        self.wall = data["arrival"] - streams._wall_to_monotonic
        self.given = False

    def __call__(self) -> int:
        if self.given:
            self.given = False
            return 0
        rx, first = self.streams.io.rx, self.at
        last = min(first + self.batch, self.data["rows"].size)
        count = last - first
        rx.data[:count, :PACKET_BYTES] = self.data["packets"][first:last]
        rx.names["port"][:count] = BRIDGE_PORT0 + self.data["rows"][first:last]
        rx.headers["len"][:count] = PACKET_BYTES
        wall = self.wall[first:last]
        rx.controls["sec"][:count] = np.floor(wall)
        rx.controls["nsec"][:count] = (wall - np.floor(wall)) * 1e9
        rx.headers["controllen"][:count] = 32
        self.at, self.given = last, True
        return count


def best(repeat: int, run: Callable[..., float], *args: object) -> float:
    return min(run(*args) for _ in range(repeat))


def time_stats(data: dict[str, np.ndarray], calls: int, batch: int, native: bool) -> float:
    packets = data["packets"]
    seq = packets[:, 2:4].copy().view(">u2").reshape(-1)
    ts = packets[:, 4:8].copy().view(">u4").reshape(-1)
    rows, arrival = data["rows"].astype(np.int64), data["arrival"]
    stats = ReceiveStats(calls, native=native)
    start = time.perf_counter()
    for first in range(0, rows.size, batch):
        last = first + batch
        stats.receive(rows[first:last], seq[first:last], ts[first:last], arrival[first:last])
    return (time.perf_counter() - start) / rows.size


def time_receive_digest(
    data: dict[str, np.ndarray], calls: int, batch: int, digest: int, native: bool
) -> tuple[float, float, float]:
    """Per packet: filling the buffer alone, `receive` (the fill taken off), `digest`."""
    streams = streams_for(calls, native)
    try:
        filler = Filler(streams, data, batch)
        streams.io.receive = filler  # type: ignore[method-assign]
        total = data["rows"].size
        start = time.perf_counter()
        while filler.at < total:
            filler()
            filler()
        fill = time.perf_counter() - start
        filler.at, receiving, digesting = 0, 0.0, 0.0
        while filler.at < total:
            start = time.perf_counter()
            for _ in range(digest // batch):
                streams.receive()
            middle = time.perf_counter()
            streams.digest()
            receiving += middle - start
            digesting += time.perf_counter() - middle
        return fill / total, (receiving - fill) / total, digesting / total
    finally:
        streams.close()


def time_send(calls: int, send: int, native: bool, batches: int = 200) -> float:
    streams = streams_for(calls, native)
    try:
        rows = [np.arange(first, first + send) % calls for first in range(0, calls, send)]
        start = time.perf_counter()
        for k in range(batches):
            streams._send(rows[k % len(rows)])
        return (time.perf_counter() - start) / (batches * send)
    finally:
        streams.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=20, help="20 ms rounds of traffic")
    parser.add_argument("--batch", type=int, default=100, help="packets per receive")
    parser.add_argument("--digest", type=int, default=1000, help="packets per digest")
    parser.add_argument("--send", type=int, default=200, help="calls per send batch")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    data = traffic(args.calls, args.rounds)
    paths = [False, True] if loadnative.compiled is not None else [False]
    print(f"{data['rows'].size} packets, {args.calls} calls; us per packet, best of {args.repeat}")
    for native in paths:
        name = "compiled" if native else "numpy"
        stats = best(args.repeat, time_stats, data, args.calls, args.batch, native)
        runs = [
            time_receive_digest(data, args.calls, args.batch, args.digest, native)
            for _ in range(args.repeat)
        ]
        receive = min(run[1] for run in runs)
        digest = min(run[2] for run in runs)
        fill = min(run[0] for run in runs)
        send = best(args.repeat, time_send, args.calls, args.send, native)
        print(
            f"{name:9} stats {stats * 1e6:6.3f}  receive {receive * 1e6:6.3f}"
            f" (fill {fill * 1e6:.3f} off)  digest {digest * 1e6:6.3f}  send {send * 1e6:6.3f}"
        )


if __name__ == "__main__":
    main()
