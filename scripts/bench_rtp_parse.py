"""Benchmark: aiortc's RtpPacket against bridge.rtp.packet, plus the G.711/mixer steps of a tick.

Not a test: prints nanoseconds per call. Run with `.venv/bin/python scripts/bench_rtp_parse.py`.
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


def main() -> None:
    aiortc_packet = AiortcRtpPacket.parse(PACKET)
    sender = RtpSender(payload_type=0)
    room_size = 5
    room = RoomMix(capacity=room_size)
    frames = room.slots(room_size)
    frames[:] = np.stack([sine(300 + 200 * i, 0.02) for i in range(room_size)])
    talking = np.ones(room_size, dtype=bool)
    row = np.zeros(160, dtype=np.int16)

    def tick() -> None:
        mixed = room.mix(frames, talking)
        LINEAR_TO_ULAW[mixed.view(np.uint16)]

    rows = [
        ("struct header unpack (baseline)", lambda: HEADER.unpack_from(PACKET)),
        ("aiortc RtpPacket.parse", lambda: AiortcRtpPacket.parse(PACKET)),
        ("bridge parse_rtp", lambda: parse_rtp(PACKET)),
        ("aiortc RtpPacket.serialize", aiortc_packet.serialize),
        ("bridge build_rtp", lambda: build_rtp(0, 1234, 160_000, 0xDEADBEEF, PAYLOAD)),
        ("bridge RtpSender.packet", lambda: sender.packet(PAYLOAD)),
        ("ulaw_decode_into (160 samples)", lambda: ulaw_decode_into(PAYLOAD, row)),
        (f"RoomMix.mix + ulaw encode ({room_size} rows)", tick),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"{'operation':<{width}}  ns/call")
    print(f"{'-' * width}  -------")
    for name, function in rows:
        print(f"{name:<{width}}  {ns_per_call(function):7.0f}")


if __name__ == "__main__":
    main()
