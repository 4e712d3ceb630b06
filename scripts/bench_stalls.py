"""What stalls of the event loop cost callers on per-call RTP sockets: frames concealed and trimmed.

Not a test. One process, the in-process media backend (`LocalMedia`), the real `MixerClock` on
uvloop (as the bridge and its workers run it) and real UDP sockets on 127.0.0.1: `--callers`
phones in rooms of five send G.711 every 20 ms from a thread, and the loop is blocked
`--stalls` times for `--stall-ms` (as a garbage collection, a slow command or a paused VM
would block it). Over the stalls it counts what the callers' jitter buffers concealed (ticks
with no frame) and trimmed (frames dropped over the bound): what a listener hears as glitches.

    .venv/bin/python scripts/bench_stalls.py [--callers 20] [--stalls 5] [--stall-ms 70]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import threading
import time

import uvloop

from bridge.config import RtpConfig
from bridge.mixing.backend import AddParticipant, Controls, Identity, NegotiatedMedia
from bridge.mixing.local import LocalMedia
from bridge.net.mixer_clock import TICK_SECONDS, MixerClock
from bridge.rtp.packet import RtpSender

LOOPBACK = "127.0.0.1"
SETTLE_SECONDS = 1.0  # ticking before the first stall
BETWEEN_SECONDS = 0.5  # after each stall
SILENCE = bytes([0xFF] * 160)  # a G.711 frame (PCMU)


def send_until(stop: threading.Event, phones: list[socket.socket], ports: list[int]) -> None:
    """Every phone's next packet every 20 ms, on absolute deadlines (a thread: on time while
    the loop is blocked)."""
    streams = [RtpSender() for _ in phones]
    due = time.monotonic()
    while not stop.is_set():
        for phone, stream, port in zip(phones, streams, ports, strict=True):
            phone.sendto(stream.packet(SILENCE), (LOOPBACK, port))
        due += TICK_SECONDS
        time.sleep(max(0.0, due - time.monotonic()))


async def measure(callers: int, stalls: int, stall_ms: float) -> tuple[int, int]:
    media = LocalMedia(RtpConfig(port_min=21000, port_max=21998))
    phones: list[socket.socket] = []
    ports: list[int] = []
    for i in range(callers):
        phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        phone.bind((LOOPBACK, 0))
        phones.append(phone)
        port = media.reserve(f"leg{i}", LOOPBACK)
        if port is None:
            raise SystemExit("no free RTP port in 21000-21998")
        ports.append(port)
        media.apply(
            AddParticipant(
                leg=f"leg{i}",
                room=f"room{i // 5}",
                identity=Identity(f"leg{i}", f"caller{i}", "", LOOPBACK),
                media=NegotiatedMedia("PCMU", phone.getsockname(), None, False),
                controls=Controls(),
                now=0.0,
            )
        )
    stop = threading.Event()
    sender = threading.Thread(target=send_until, args=(stop, phones, ports), daemon=True)
    sender.start()
    ticking = asyncio.create_task(MixerClock().run(media.tick))
    members = media.engine.members.values()
    try:
        await asyncio.sleep(SETTLE_SECONDS)
        before = [(m.jitter.concealed, m.jitter.trimmed) for m in members]
        for _ in range(stalls):
            time.sleep(stall_ms / 1000.0)  # the loop is blocked
            await asyncio.sleep(BETWEEN_SECONDS)
        after = [(m.jitter.concealed, m.jitter.trimmed) for m in members]
    finally:
        stop.set()
        ticking.cancel()
        sender.join()
        for phone in phones:
            phone.close()
        await media.stop()
    concealed = sum(a[0] - b[0] for a, b in zip(after, before, strict=True))
    trimmed = sum(a[1] - b[1] for a, b in zip(after, before, strict=True))
    return concealed, trimmed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callers", type=int, default=20)
    parser.add_argument("--stalls", type=int, default=5)
    parser.add_argument("--stall-ms", type=float, default=70.0)
    args = parser.parse_args()
    concealed, trimmed = uvloop.run(measure(args.callers, args.stalls, args.stall_ms))
    print(
        f"{args.stalls} stalls of {args.stall_ms:g} ms, {args.callers} callers: "
        f"concealed {concealed}, trimmed {trimmed} frames"
    )


if __name__ == "__main__":
    main()
