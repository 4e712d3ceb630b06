"""Profile: `Room.tick` in process, one room per size, real RTP in through `receive_rtp`.

Each participant is a G.711 caller whose phone side is an `RtpSender`: a few talk (a tone),
the rest send silence (mu-law 0xFF, which decodes to exact zeros) or, with `--noise`, an open
microphone's low noise (never exact zeros). Every tick pushes one packet per participant into
its jitter buffer, then times `Room.tick`; `send` only counts bytes. No sockets, no clock, so
the figures are the tick's own CPU cost. Not a test: it prints microseconds, asserts nothing.

    .venv/bin/python scripts/profile_room.py [--sizes 10 50 350] [--talkers 3] [--noise 0]
    # a steady loop to attach a profiler to (or run under it):
    .venv/bin/py-spy record --format raw -o /tmp/room.txt -- \\
        .venv/bin/python scripts/profile_room.py --sizes 350 --seconds 20
"""

from __future__ import annotations

import argparse
import statistics
import time

import bridge  # noqa: F401 - first: one BLAS thread, as the bridge runs (see bridge/__init__.py)

# isort: split
import numpy as np

from bridge.media.g711 import CODECS
from bridge.media.tones import ToneSource
from bridge.mixing.participant import Participant
from bridge.mixing.room import Room
from bridge.rtp.jitter import JitterBuffer
from bridge.rtp.packet import RtpSender

FRAME_SECONDS = 0.020
LOOP_FRAMES = 50  # each caller's audio repeats every second


class ByteCounter:
    """The participants' `send`: counts packets and bytes, sends nothing."""

    def __init__(self) -> None:
        self.packets = 0
        self.bytes = 0

    def send(self, data: bytes, address: tuple[str, int]) -> None:
        self.packets += 1
        self.bytes += len(data)


class Caller:
    """The phone side of one participant: its RTP stream and a second of looped audio."""

    def __init__(self, participant: Participant, payloads: list[bytes]) -> None:
        self.participant = participant
        self.sender = RtpSender(payload_type=participant.codec.payload_type)
        self.payloads = payloads
        self.position = 0

    def send_one(self, now: float) -> None:
        payload = self.payloads[self.position % LOOP_FRAMES]
        self.position += 1
        self.participant.receive_rtp(self.sender.packet(payload), self.participant.remote, now)


def audio(
    codec: str, index: int, talking: bool, noise: int, rng: np.random.Generator
) -> list[bytes]:
    encode = CODECS[codec].encode
    if talking:
        source = ToneSource(300.0 + 97.0 * index, 6000)
        return [encode(source.next_frame(160)) for _ in range(LOOP_FRAMES)]
    if noise:
        frames = rng.integers(-noise, noise + 1, size=(LOOP_FRAMES, 160)).astype(np.int16)
        return [encode(frame) for frame in frames]
    return [encode(np.zeros(160, np.int16))] * LOOP_FRAMES


def build(
    size: int, talkers: int, codec: str, noise: int, counter: ByteCounter
) -> tuple[Room, list[Caller]]:
    rng = np.random.default_rng(size)
    room = Room(f"room{size}", max_participants=size)
    callers = []
    for i in range(size):
        participant = Participant(
            id=f"p{i}",
            call_key=f"call{i}",
            room=room.name,
            caller=f"sip:{i}@example.com",
            display_name="",
            codec=CODECS[codec],
            remote=("127.0.0.1", 20000 + 2 * i),
            signalling_host="127.0.0.1",
            send=counter.send,
            jitter=JitterBuffer(2, 3),
        )
        room.add(participant)
        callers.append(Caller(participant, audio(codec, i, i < talkers, noise, rng)))
    return room, callers


def measure(room: Room, callers: list[Caller], ticks: int, warmup: int = 50) -> dict[str, float]:
    tick_times, receive_times = [], []
    now = 0.0
    perf = time.perf_counter
    for tick in range(warmup + ticks):
        start = perf()
        for caller in callers:
            caller.send_one(now)
        middle = perf()
        room.tick()
        end = perf()
        now += FRAME_SECONDS
        if tick >= warmup:
            receive_times.append(middle - start)
            tick_times.append(end - middle)
    size = len(callers)
    return {
        "tick_us": statistics.median(tick_times) * 1e6,
        "tick_mean_us": statistics.fmean(tick_times) * 1e6,
        "per_participant_us": statistics.median(tick_times) * 1e6 / size,
        "receive_us": statistics.median(receive_times) * 1e6 / size,
        "lost": sum(c.participant.jitter.stats.lost for c in callers),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 50, 350])
    parser.add_argument("--talkers", type=int, default=3)
    parser.add_argument("--codec", choices=sorted(CODECS), default="PCMU")
    parser.add_argument("--noise", type=int, default=0, help="silent callers' noise, +-LSB")
    parser.add_argument("--ticks", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=0.0, help="loop this long (profiling)")
    args = parser.parse_args()

    counter = ByteCounter()
    if args.seconds:
        rooms = [build(size, args.talkers, args.codec, args.noise, counter) for size in args.sizes]
        deadline = time.monotonic() + args.seconds
        ticks = 0
        while time.monotonic() < deadline:
            for room, callers in rooms:
                measure(room, callers, ticks=50, warmup=0)
            ticks += 50
        print(f"{ticks} ticks of rooms {args.sizes}, {counter.packets} packets sent")
        return 0

    print(
        f"{args.codec}, {args.talkers} talkers, others "
        + (f"noise +-{args.noise} LSB" if args.noise else "silent (exact zeros)")
    )
    print(
        f"{'size':>5} {'tick us':>9} {'mean us':>9} {'us/member':>10} {'rx us/pkt':>10} {'lost':>5}"
    )
    for size in args.sizes:
        room, callers = build(size, args.talkers, args.codec, args.noise, counter)
        result = measure(room, callers, args.ticks)
        print(
            f"{size:>5} {result['tick_us']:>9.1f} {result['tick_mean_us']:>9.1f} "
            f"{result['per_participant_us']:>10.2f} {result['receive_us']:>10.2f} "
            f"{result['lost']:>5}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
