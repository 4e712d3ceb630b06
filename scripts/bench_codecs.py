"""CPU per participant of the reference tick in rooms of each codec (`bench.py --codecs`).

Rooms of 10 (PCMU, G.722, Opus at 48 kHz, and mixed PCMU+G.722+Opus), with all ten talking or
two of ten (keys negotiated as telephone-event, so no in-band detection): the engine receives
pre-encoded RTP (the senders' encoding is not timed), mixes and encodes what each member is
sent; its process CPU time per participant and 20 ms tick is the figure. No sockets: the send
function drops the packets, so this is the mixing and codec cost the bridge adds per
participant, on top of the packet path `bench.py`'s load test measures.

    .venv/bin/python scripts/bench.py --codecs [--seconds 5]
"""

from __future__ import annotations

import time

import numpy as np

from bridge.media.codecs import MediaCodec, WidebandCodec, codec_for, native_rate
from bridge.media.tones import ToneSource
from bridge.mixing.engine import MediaEngine
from bridge.mixing.participant import Participant
from bridge.rtp.jitter import JitterBuffer
from bridge.rtp.packet import RtpSender

ROOM = 10
FRAMES = 50  # distinct pre-encoded frames per talker, cycled


def codec(name: str) -> MediaCodec:
    return codec_for(name, 96 if name == "OPUS" else None)


def encoded_stream(media: MediaCodec, talking: bool, freq: float) -> list[bytes]:
    rate = native_rate(media)
    source = ToneSource(freq, 6000 if talking else 0, rate)
    encoder = media.new_encoder() if isinstance(media, WidebandCodec) else media
    noise = np.random.default_rng(int(freq))
    frames = []
    for _ in range(FRAMES):
        frame = source.next_frame(rate // 50)
        if talking:  # a tone plus noise: not trivially compressible
            frame = (frame + noise.normal(0, 800, frame.size)).clip(-32768, 32767)
        frames.append(encoder.encode(np.asarray(frame, np.int16)))
    return frames


Member = tuple[Participant, list[bytes], RtpSender]


def room(engine: MediaEngine, names: list[str], talkers: int) -> list[Member]:
    members = []
    for i, name in enumerate(names):
        media = codec(name)
        member = Participant(
            id=f"p{i}", call_key=f"p{i}", room="r", caller=f"p{i}", display_name="",
            codec=media, remote=("127.0.0.1", 4000 + i), signalling_host="127.0.0.1",
            send=lambda data, address: None, jitter=JitterBuffer(2, 3),
        )
        member.jitter.clock_rate = media.clock_rate
        member.telephone_event_pt = 101  # keys as RFC 4733 events, as softphones send them
        engine.add(member, "r")
        stream = encoded_stream(media, i < talkers, 300.0 + 170 * i)
        members.append((member, stream, RtpSender(payload_type=media.payload_type)))
    return members


def measure(names: list[str], talkers: int, seconds: float) -> float:
    """Process CPU microseconds per participant and tick."""
    engine = MediaEngine()
    members = room(engine, names, talkers)
    ticks = int(seconds * 50)

    def step(tick: int) -> None:
        now = tick * 0.02
        for member, stream, sender in members:
            step_ts = member.codec.clock_rate // 50
            member.receive_rtp(sender.packet(stream[tick % FRAMES], step_ts), member.remote, now)
        engine.tick(now + 0.001, now)

    for tick in range(50):  # warm up: jitter buffers filled, codec state made
        step(tick)
    start = time.process_time()
    for tick in range(50, 50 + ticks):
        step(tick)
    return (time.process_time() - start) / ticks / len(members) * 1e6


ROOMS = {
    "PCMU": ["PCMU"] * ROOM,
    "G722": ["G722"] * ROOM,
    "OPUS": ["OPUS"] * ROOM,
    "mixed": ["OPUS", "G722", "PCMU"] * 3 + ["PCMU"],
}


def run(seconds: float) -> list[tuple[str, str, float, float]]:
    rows = []
    for label, names in ROOMS.items():
        for talkers, scenario in ((ROOM, "all talking"), (2, "2 of 10 talking")):
            us = measure(names, talkers, seconds)
            rows.append((label, scenario, round(us, 1), round(us / 20000 * 100, 3)))
    return rows


def main(seconds: float = 5.0) -> int:
    rows = run(seconds)
    width = max(len(r[0]) for r in rows)
    print(f"{'room of 10':<{width}}  {'scenario':<16} {'CPU us/part/tick':>17} {'% core/part':>12}")
    for label, scenario, us, percent in rows:
        print(f"{label:<{width}}  {scenario:<16} {us:>17.1f} {percent:>12.3f}")
    return 0

