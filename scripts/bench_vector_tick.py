"""The vectorised tick against the reference, in process: CPU per participant-second.

Rooms of G.711 callers are fed one packet per caller per tick through `receive_rtp` (so the
jitter buffers work as in the bridge), then the whole process' rooms are mixed by one
`VectorTick.tick` or by `Room.tick` room after room, sends only counted. CPU time
(`time.process_time`), so the figures hold on a busy machine; no sockets, so they are the
tick's own cost (the bridge adds its packets' receive and send system calls). Not a test.

    .venv/bin/python scripts/bench_vector_tick.py [--layouts 50x10 200x10 1x350] [--ticks 250]
"""

from __future__ import annotations

import argparse
import time

import bridge  # noqa: F401 - first: one BLAS thread, as the bridge runs (see bridge/__init__.py)

# isort: split
import numpy as np
from bench_common import print_table

from bridge.media.g711 import PCMU
from bridge.media.tones import ToneSource
from bridge.mixing.participant import Participant
from bridge.mixing.room import Room
from bridge.mixing.vector.tick import VectorTick
from bridge.rtp.jitter import JitterBuffer
from bridge.rtp.packet import RtpSender

LOOP = 50


def _drop(data: bytes, address: tuple[str, int]) -> None:
    pass


Feed = tuple[Participant, RtpSender, list[bytes]]


def build(rooms: int, size: int, talkers: int) -> tuple[list[Room], list[Feed]]:
    made, feeds = [], []
    for r in range(rooms):
        room = Room(f"r{r}", size)
        for i in range(size):
            member = Participant(
                id=f"p{r}-{i}", call_key=f"c{r}-{i}", room=room.name, caller="", display_name="",
                codec=PCMU, remote=("127.0.0.1", 4000), signalling_host="127.0.0.1", send=_drop,
                jitter=JitterBuffer(2, 3), telephone_event_pt=101,
            )  # fmt: skip
            room.add(member)
            tone = ToneSource(300.0 + 37.0 * i, 5000) if i < talkers else None
            sender = RtpSender(payload_type=0)
            silence = np.zeros(160, np.int16)
            payloads = [PCMU.encode(tone.next_frame(160) if tone else silence) for _ in range(LOOP)]
            feeds.append((member, sender, payloads))
        made.append(room)
    return made, feeds


def measure(layout: str, ticks: int, vectorised: bool) -> float:
    """CPU ms per participant-second of the tick alone (packets fed outside the timing)."""
    rooms_text, size_text = layout.split("x")
    rooms, size = int(rooms_text), int(size_text)
    made, feeds = build(rooms, size, 3 if size > 10 else 2)
    vector = VectorTick()
    used = 0.0
    for tick in range(ticks):
        for member, sender, payloads in feeds:  # sequence numbers run on, as a phone's do
            member.receive_rtp(sender.packet(payloads[tick % LOOP]), member.remote, tick * 0.02)
        started = time.process_time()
        if vectorised:
            vector.tick(made)
        else:
            for room in made:
                room.tick()
        if tick >= 10:
            used += time.process_time() - started
    seconds = (ticks - 10) * 0.02
    return 1000.0 * used / seconds / (rooms * size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layouts", nargs="+", default=["50x10", "200x10", "1x350"])
    parser.add_argument("--ticks", type=int, default=250)
    args = parser.parse_args()
    rows = []
    for layout in args.layouts:
        reference = measure(layout, args.ticks, vectorised=False)
        vectorised = measure(layout, args.ticks, vectorised=True)
        rooms, size = (int(x) for x in layout.split("x"))
        rows.append(
            (
                f"{rooms} room(s) of {size}",
                rooms * size,
                round(reference, 3),
                round(vectorised, 3),
                round(reference / vectorised, 2),
                round(vectorised * rooms * size / 10.0, 1),
            )
        )
    headers = (
        "layout", "participants", "reference ms/part-s", "vectorised ms/part-s", "speed-up",
        "vectorised % of one core",
    )  # fmt: skip
    print_table(headers, rows)


if __name__ == "__main__":
    main()
