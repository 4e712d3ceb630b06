"""Benchmark: aiortc's RtpPacket against bridge.rtp.packet, plus the G.711/mixer steps of a tick.

Not a test: prints nanoseconds per call (best of 5; a loaded machine reads up to 2x slower).
Run with `.venv/bin/python scripts/bench_rtp_parse.py`.
"""

from __future__ import annotations

import struct
import timeit
from collections.abc import Callable

import numpy as np
from aiortc.rtp import RtpPacket as AiortcRtpPacket

from bridge.media.g711 import LINEAR_TO_ULAW, ulaw_decode_into
from bridge.media.mixer import RoomMix
from bridge.media.tones import sine
from bridge.rtp.packet import RtpSender, build_rtp, parse_rtp

PAYLOAD = bytes(range(160))
PACKET = build_rtp(0, 1234, 160_000, 0xDEADBEEF, PAYLOAD)
HEADER = struct.Struct("!BBHII")


def ns_per_call(function: Callable[[], object], repeat: int = 5) -> float:
    timer = timeit.Timer(function)
    number, _ = timer.autorange()
    return min(timer.repeat(repeat, number)) / number * 1e9


def _room_tick(size: int) -> Callable[[], object]:
    """One room's mix-minus and mu-law encode, everyone talking."""
    room = RoomMix(capacity=size)
    frames = room.slots(size)
    frames[:] = np.stack([sine(300 + 37 * i, 0.02) for i in range(size)])
    talking = np.ones(size, dtype=bool)

    def tick() -> object:
        return LINEAR_TO_ULAW.take(room.mix(frames, talking).view(np.uint16))

    return tick


def main() -> None:
    aiortc_packet = AiortcRtpPacket.parse(PACKET)
    sender = RtpSender(payload_type=0)
    row = np.zeros(160, dtype=np.int16)
    ticks = {size: _room_tick(size) for size in (5, 50)}
    rows = [
        ("struct header unpack (baseline)", lambda: HEADER.unpack_from(PACKET)),
        ("aiortc RtpPacket.parse", lambda: AiortcRtpPacket.parse(PACKET)),
        ("bridge parse_rtp", lambda: parse_rtp(PACKET)),
        ("aiortc RtpPacket.serialize", aiortc_packet.serialize),
        ("bridge build_rtp", lambda: build_rtp(0, 1234, 160_000, 0xDEADBEEF, PAYLOAD)),
        ("bridge RtpSender.packet", lambda: sender.packet(PAYLOAD)),
        ("ulaw_decode_into (160 samples)", lambda: ulaw_decode_into(PAYLOAD, row)),
        *((f"RoomMix.mix + ulaw encode ({size} rows)", tick) for size, tick in ticks.items()),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"{'operation':<{width}}  ns/call")
    print(f"{'-' * width}  -------")
    for name, function in rows:
        print(f"{name:<{width}}  {ns_per_call(function):7.0f}")


if __name__ == "__main__":
    main()
