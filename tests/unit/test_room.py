"""A room's tick driven by hand: RTP in through `receive_rtp`, packets out through `send`."""

from __future__ import annotations

import numpy as np

from bridge.conference.participant import Participant
from bridge.conference.room import Room, valid_room_name
from bridge.media.g711 import CODECS
from bridge.media.tones import ToneSource, tone_levels
from bridge.rtp.jitter import JitterBuffer
from bridge.rtp.packet import RtpSender, parse_rtp

TONES = {"a": 440.0, "b": 1000.0, "c": 1700.0}


class Wire:
    """Collects what a participant is sent, decoded, per tick."""

    def __init__(self, codec: str) -> None:
        self.codec = CODECS[codec]
        self.frames: list[np.ndarray] = []
        self.payload_types: set[int] = set()

    def send(self, data: bytes, address: tuple[str, int]) -> None:
        packet = parse_rtp(data)
        self.payload_types.add(packet.payload_type)
        self.frames.append(self.codec.decode(packet.payload))


def make_room(codecs: dict[str, str]) -> tuple[Room, dict[str, Participant], dict[str, Wire]]:
    room = Room("test", max_participants=10)
    members, wires = {}, {}
    for port, (name, codec) in enumerate(codecs.items(), start=4000):
        wire = Wire(codec)
        member = Participant(
            id=name,
            call_key=name,
            room="test",
            caller=name,
            display_name="",
            codec=CODECS[codec],
            remote=("127.0.0.1", port),
            signalling_host="127.0.0.1",
            send=wire.send,
            jitter=JitterBuffer(2, 3),
        )
        room.add(member)
        members[name], wires[name] = member, wire
    return room, members, wires


def run(room: Room, members: dict[str, Participant], ticks: int) -> None:
    sources = {name: ToneSource(TONES[name], 6000) for name in members}
    senders = {name: RtpSender(payload_type=m.codec.payload_type) for name, m in members.items()}
    for tick in range(ticks):
        for name, member in members.items():
            frame = member.codec.encode(sources[name].next_frame(160))
            member.receive_rtp(senders[name].packet(frame), member.remote, tick * 0.02)
        room.tick()


def heard(wire: Wire) -> dict[float, float]:
    return tone_levels(np.concatenate(wire.frames[10:]), list(TONES.values()))


def test_mix_minus_mute_deaf_and_hold() -> None:
    room, members, wires = make_room({"a": "PCMU", "b": "PCMA", "c": "PCMU"})
    run(room, members, 60)
    levels = heard(wires["a"])
    assert levels[440.0] < -55 and levels[1000.0] > -25 and levels[1700.0] > -25
    assert wires["b"].payload_types == {8} and wires["a"].payload_types == {0}

    for wire in wires.values():
        wire.frames.clear()
    members["b"].muted = True
    members["c"].deaf = True
    members["a"].on_hold = True
    run(room, members, 60)
    assert wires["a"].frames == []  # held: sent nothing
    assert all(not frame.any() for frame in wires["c"].frames)  # deaf: silence
    assert len(wires["c"].frames) == 60
    levels_b = heard(wires["b"])  # muted b still hears; held a is not mixed
    assert levels_b[1700.0] > -25 and levels_b[440.0] < -55


def test_lone_participant_hears_silence_and_wrong_source_is_ignored() -> None:
    room, members, wires = make_room({"a": "PCMU"})
    run(room, members, 20)
    assert wires["a"].frames and all(not frame.any() for frame in wires["a"].frames)
    member = members["a"]
    member.receive_rtp(RtpSender().packet(b"\xff" * 160), ("127.0.0.9", 4000), 1.0)
    member.receive_rtp(b"\x40" + bytes(171), member.remote, 1.0)
    assert member.counters.wrong_source == 1 and member.counters.bad_packets == 1


def test_room_names() -> None:
    assert valid_room_name("Room_1.a-b")
    assert not valid_room_name("") and not valid_room_name("a" * 33)
    assert not valid_room_name("bad room") and not valid_room_name("bad$room")


def test_talking_is_reported_for_loud_participants_and_not_for_silent_ones() -> None:
    room, members, _ = make_room({"a": "PCMU", "b": "PCMU"})
    members["b"].muted = True  # muted people still talk; only what they say goes unheard
    run(room, {"a": members["a"]}, 10)  # b sends nothing: concealed silence
    assert [p.id for p in room.talk_changes] == ["a"]
    assert members["a"].voice.talking and not members["b"].voice.talking
