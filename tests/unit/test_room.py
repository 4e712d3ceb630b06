"""A room's tick driven by hand: RTP in through `receive_rtp`, packets out through `send`."""

from __future__ import annotations

import pickle
import struct

import numpy as np

from bridge.media.g711 import CODECS
from bridge.media.tones import ToneSource, dtmf_tones, tone_levels
from bridge.mixing.participant import Participant
from bridge.mixing.room import Room, valid_room_name
from bridge.mixing.workers import handoff
from bridge.rtp.jitter import JitterBuffer
from bridge.rtp.packet import RtpSender, build_rtp, parse_rtp

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


def odd_datagrams(codec_pt: int) -> list[bytes]:
    """Datagrams off the receive fast path, mixed with plain ones of the codec."""
    audio = bytes(range(160))
    header = struct.Struct("!BBHII")
    plain = [build_rtp(codec_pt, 1000 + i, 160 * i, 0xABCD, audio) for i in range(12)]
    return [
        plain[0],
        plain[1],
        build_rtp(codec_pt, 1002, 320, 0xABCD, audio, marker=True),  # marker: still audio
        header.pack(0x81, codec_pt, 1003, 480, 0xABCD) + b"CSRC" + audio,  # one CSRC
        header.pack(0x90, codec_pt, 1004, 640, 0xABCD) + b"\x00\x01\x00\x01" + b"EXTN" + audio,
        header.pack(0xA0, codec_pt, 1005, 800, 0xABCD) + audio + b"\x00\x00\x03",  # padding
        header.pack(0x40, codec_pt, 1006, 960, 0xABCD) + audio,  # RTP version 1
        header.pack(0x80, 0xC8, 1, 2, 0xABCD) + bytes(16),  # RTCP sender report
        b"\x80\xc8",  # too short for RTP, but RTCP by type: ignored
        b"\x80\x00\x00",  # too short, not RTCP: bad
        b"",
        build_rtp(13, 1007, 1120, 0xABCD, b"\x40"),  # comfort noise
        *digit_packets(1008),
        plain[10],
        header.pack(0xA0, codec_pt, 1011, 1760, 0xABCD) + audio + b"\x00",  # padding 0: bad
        build_rtp(codec_pt, 40000, 0, 0x1234, audio),  # new SSRC: a reset
        plain[11],
    ]


def digit_packets(sequence: int) -> list[bytes]:
    sender = RtpSender(payload_type=101, ssrc=0xABCD, sequence=sequence, timestamp=1280)
    events = [(0x0A, 160), (0x0A, 320), (0x8A, 480), (0x8A, 480), (0x8A, 480)]  # end bit: 0x80
    return [
        sender.packet(bytes([5, flags]) + duration.to_bytes(2, "big"), samples=0)
        for flags, duration in events
    ]


def test_receive_fast_path_decides_as_the_general_path() -> None:
    """`receive_rtp` queues a plain packet of the codec itself; `_receive_other` (parse_rtp,
    the general path) must take every datagram to the same counters, digits and queue."""
    for codec in ("PCMU", "PCMA"):
        _, members, _ = make_room({"a": codec, "b": codec})
        fast, general = members["a"], members["b"]
        general.remote = fast.remote
        fast.telephone_event_pt = general.telephone_event_pt = 101
        fast.latched = general.latched = fast.remote
        for tick, data in enumerate(odd_datagrams(fast.codec.payload_type)):
            fast.receive_rtp(data, fast.remote, tick * 0.02)
            general._receive_other(data, tick * 0.02)
            assert fast.counters == general.counters and fast.last_rtp == general.last_rtp
            assert fast.jitter.stats == general.jitter.stats
            assert fast.jitter.pop() == general.jitter.pop()
        assert fast.digits == general.digits == [("5", "rfc4733")]
        counters = fast.counters
        assert (counters.bad_packets, counters.other_payload, counters.packets_in) == (4, 1, 15)
        assert fast.jitter.stats.received == 9 and fast.jitter.stats.reset == 2  # and back


def test_a_participant_pickles_for_handoff_mid_stream() -> None:
    _, members, _ = make_room({"a": "PCMA"})
    member = members["a"]
    sender = RtpSender(payload_type=8)
    for tick in range(5):
        member.receive_rtp(sender.packet(bytes(160)), member.remote, tick * 0.02)
    sender.sequence = (sender.sequence + 500) & 0xFFFF  # a jump on probation: held as a tuple
    member.receive_rtp(sender.packet(bytes(160)), member.remote, 0.1)
    moved = handoff.unpack(handoff.pack(member))
    assert moved.jitter.stats == member.jitter.stats and moved.latched == member.latched
    assert vars(moved.jitter) == {**vars(member.jitter), "stats": moved.jitter.stats}
    pickle.dumps(moved.sender)
    confirming = sender.packet(bytes(160))  # the next after the jump: confirms it
    member.receive_rtp(confirming, member.remote, 0.12)
    moved.receive_rtp(confirming, member.remote, 0.12)
    assert moved.jitter.stats.reset == member.jitter.stats.reset == 1


def test_in_band_keys_are_only_looked_for_when_someone_keys_in_band() -> None:
    """Callers who negotiated telephone-event send keys as events: a key tone in their audio
    is just sound (heard by the room, no digit); one in-band caller turns detection on."""
    keys = dtmf_tones("5", on_ms=200, off_ms=0)
    room, members, wires = make_room({"a": "PCMU", "b": "PCMU"})
    for member in members.values():
        member.telephone_event_pt = 101
    senders = {name: RtpSender() for name in members}
    found = []
    for tick in range(keys.size // 160):
        frame = members["a"].codec.encode(keys[tick * 160 : (tick + 1) * 160])
        members["a"].receive_rtp(senders["a"].packet(frame), members["a"].remote, tick * 0.02)
        silence = members["b"].codec.silence
        members["b"].receive_rtp(senders["b"].packet(silence), members["b"].remote, tick * 0.02)
        found.extend(room.tick())
    assert found == []
    heard = tone_levels(np.concatenate(wires["b"].frames[4:]), [770.0, 1336.0])
    assert min(heard.values()) > -30.0  # the key tone reached b: not cut as a key press

    room, members, wires = make_room({"a": "PCMU", "b": "PCMU"})
    members["b"].telephone_event_pt = 101  # a keys in-band
    senders = {name: RtpSender() for name in members}
    for tick in range(keys.size // 160):
        frame = members["a"].codec.encode(keys[tick * 160 : (tick + 1) * 160])
        members["a"].receive_rtp(senders["a"].packet(frame), members["a"].remote, tick * 0.02)
        silence = members["b"].codec.silence
        members["b"].receive_rtp(senders["b"].packet(silence), members["b"].remote, tick * 0.02)
        found.extend(room.tick())
    assert [(p.id, digit, method) for p, digit, method in found] == [("a", "5", "inband")]
