"""RFC 4733 telephone-event: payload codec, one digit per key press, bad input, SIPp's pcaps."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from bridge.rtp.packet import RtpPacket, RtpSender, build_rtp, parse_rtp
from bridge.rtp.telephone_event import (
    DIGITS,
    DigitDetected,
    TelephoneEvent,
    TelephoneEventDecoder,
    digit_packets,
    encode_telephone_event,
    parse_telephone_event,
)

SIPP_DIR = Path("/usr/share/sip-tester")
SSRC = 0x1234_5678


def event_packet(
    code: int,
    duration: int,
    *,
    end: bool = False,
    timestamp: int = 8000,
    sequence: int = 100,
    ssrc: int = SSRC,
    marker: bool = False,
) -> RtpPacket:
    payload = encode_telephone_event(code, end, 10, duration)
    return RtpPacket(101, sequence, timestamp, ssrc, payload, marker)


def feed(decoder: TelephoneEventDecoder, packets: list[RtpPacket]) -> list[DigitDetected | None]:
    return [decoder.receive(packet) for packet in packets]


def press(code: int, timestamp: int, sequence: int = 100) -> list[RtpPacket]:
    """Start, two updates, three end packets: what a phone sends for one 150 ms press."""
    durations = [(400, False), (800, False), (1200, False)] + [(1200, True)] * 3
    return [
        event_packet(code, d, end=e, timestamp=timestamp, sequence=sequence + i, marker=i == 0)
        for i, (d, e) in enumerate(durations)
    ]


# --- payload codec ---------------------------------------------------------------------------


def test_parse_payload_fields() -> None:
    assert parse_telephone_event(bytes([11, 0x8A, 0x08, 0xC0])) == TelephoneEvent(
        event=11, end=True, volume=10, duration=2240
    )
    # the reserved bit is ignored, extra bytes (a second block) too
    assert parse_telephone_event(bytes([3, 0x7F, 0, 160, 9, 9])) == TelephoneEvent(
        3, False, 63, 160
    )


@pytest.mark.parametrize("size", [0, 1, 3])
def test_parse_truncated_payload_raises(size: int) -> None:
    with pytest.raises(ValueError, match="too short"):
        parse_telephone_event(bytes(size))


def test_encode_round_trip_and_range_checks() -> None:
    assert encode_telephone_event(11, True, 10, 2240) == bytes([11, 0x8A, 0x08, 0xC0])
    assert parse_telephone_event(encode_telephone_event(15, False, 0, 65535)) == TelephoneEvent(
        15, False, 0, 65535
    )
    for bad in [(256, False, 0, 0), (0, False, 64, 0), (0, False, 0, 65536), (0, False, 0, -1)]:
        with pytest.raises(ValueError):
            encode_telephone_event(*bad)


def test_digit_alphabet() -> None:
    assert DIGITS == "0123456789*#ABCD" and len(DIGITS) == 16


# --- the decoder -----------------------------------------------------------------------------


def test_one_digit_on_the_first_packet_of_an_event() -> None:
    decoder = TelephoneEventDecoder()
    results = feed(decoder, press(5, timestamp=16000))
    assert results[0] == DigitDetected("5", 16000, 50)
    assert results[1:] == [None] * 5


def test_marker_bit_lost_and_start_lost() -> None:
    decoder = TelephoneEventDecoder()
    packets = press(7, timestamp=500)
    packets[0].marker = False
    assert feed(decoder, packets) == [DigitDetected("7", 500, 50)] + [None] * 5
    decoder = TelephoneEventDecoder()  # start packet lost: the first update reports it
    assert feed(decoder, press(7, timestamp=500)[1:]) == [DigitDetected("7", 500, 100)] + [None] * 4


def test_same_digit_twice_is_two_digits_and_every_key_decodes() -> None:
    decoder = TelephoneEventDecoder()
    found = []
    timestamp = 0xFFFF_F000  # the timestamps wrap during the sequence
    sequence = 0xFFF0  # and so do the sequence numbers
    for code in [*range(16), 4, 4]:
        for packet in press(code, timestamp, sequence):
            result = decoder.receive(packet)
            if result is not None:
                found.append(result)
        timestamp = (timestamp + 2400) & 0xFFFF_FFFF
        sequence = (sequence + 6) & 0xFFFF
    assert "".join(d.digit for d in found) == DIGITS + "44"
    assert found[1].timestamp == (0xFFFF_F000 + 2400) & 0xFFFF_FFFF


def test_duplicates_and_reordering_within_an_event() -> None:
    decoder = TelephoneEventDecoder()
    first, update1, update2, end1, end2, end3 = press(9, timestamp=1000)
    order = [update2, first, update2, end1, update1, end1, end3, first, end2]
    assert feed(decoder, order) == [DigitDetected("9", 1000, 150)] + [None] * 8


def test_interleaved_late_packets_of_the_previous_event() -> None:
    decoder = TelephoneEventDecoder()
    one = press(1, timestamp=1000)
    two = press(2, timestamp=3000, sequence=106)
    order = [one[0], one[1], two[0], one[3], one[2], two[1], one[4], two[3], one[5]]
    results = feed(decoder, order)
    assert [r.digit for r in results if r is not None] == ["1", "2"]


def test_late_copy_of_a_forgotten_event_is_not_a_new_digit() -> None:
    decoder = TelephoneEventDecoder()
    digits = [decoder.receive(press(code % 10, 1000 + 2400 * code)[0]) for code in range(20)]
    assert all(d is not None for d in digits)
    # event 0 left the bounded memory long ago; its late update must not count again
    assert decoder.receive(press(0, 1000)[1]) is None
    assert len(decoder._events) == 8


def test_timestamp_restart_far_back_is_a_new_stream() -> None:
    decoder = TelephoneEventDecoder()
    assert decoder.receive(press(3, 50_000_000)[0]) is not None
    assert decoder.receive(press(3, 1000)[0]) == DigitDetected("3", 1000, 50)


def test_each_ssrc_has_its_own_events() -> None:
    decoder = TelephoneEventDecoder()
    a = event_packet(1, 400, timestamp=1000, ssrc=1)
    b = event_packet(1, 400, timestamp=1000, ssrc=2)
    assert feed(decoder, [a, b, a, b]) == [DigitDetected("1", 1000, 50)] * 2 + [None] * 2


def test_bad_input_is_ignored_without_exceptions() -> None:
    decoder = TelephoneEventDecoder()
    truncated = RtpPacket(101, 1, 1000, SSRC, b"\x01\x0a\x01")
    empty = RtpPacket(101, 2, 1000, SSRC, b"")
    unknown = [event_packet(code, 400, timestamp=2000 + code) for code in (16, 32, 255)]
    # END WITHOUT START: only end packets of an event never started yield nothing
    end_only = [event_packet(6, 800, end=True, timestamp=9000, sequence=s) for s in (7, 7, 8)]
    zero = event_packet(8, 0, timestamp=12000)  # duration 0 without end: reserved for states
    results = feed(decoder, [truncated, empty, *unknown, *end_only, zero])
    assert results == [None] * 9
    # a different key on a known event's timestamp is corrupt: ignored, the event stays
    assert decoder.receive(event_packet(6, 400, timestamp=12000)) is None
    # and nothing above spoiled the next good key press
    assert decoder.receive(event_packet(4, 160, timestamp=20000)) == DigitDetected("4", 20000, 20)


def test_zero_duration_start_then_end_only_reports_the_digit() -> None:
    decoder = TelephoneEventDecoder()
    start = event_packet(0, 0, timestamp=700, marker=True)
    ends = [event_packet(0, 640, end=True, timestamp=700, sequence=s) for s in (101, 101, 101)]
    assert feed(decoder, [start, *ends]) == [None, DigitDetected("0", 700, 80), None, None]


def test_long_press_split_into_segments_is_one_digit() -> None:
    decoder = TelephoneEventDecoder()
    first = [event_packet(2, d, timestamp=100) for d in range(400, 65536, 400)]
    first.append(event_packet(2, 65535, timestamp=100))
    # RFC 4733 §2.5.1.3: the next segment starts where the previous one ended
    second = [event_packet(2, d, timestamp=100 + 65535) for d in (400, 800)]
    second += [event_packet(2, 800, end=True, timestamp=100 + 65535)] * 3
    results = feed(decoder, first + second)
    assert [r for r in results if r is not None] == [DigitDetected("2", 100, 50)]
    # a new press of the same key after the end is a new digit
    assert decoder.receive(event_packet(2, 400, timestamp=100 + 65535 + 2000)) is not None


def test_memory_stays_bounded() -> None:
    decoder = TelephoneEventDecoder()
    for i in range(1000):
        decoder.receive(event_packet(i % 16, 400, timestamp=i * 1600, ssrc=i % 3))
        decoder.receive(event_packet(1, 400, end=True, timestamp=i * 7 + 5, ssrc=99))
    assert len(decoder._events) <= 8


# --- the sender helper -----------------------------------------------------------------------


def test_digit_packets_train_shares_the_stream() -> None:
    sender = RtpSender(payload_type=0, ssrc=SSRC, sequence=65534, timestamp=0xFFFF_FF00)
    audio = parse_rtp(sender.packet(bytes(160)))
    packets = [parse_rtp(data) for data in digit_packets(sender, "#", duration_ms=120)]
    events = [parse_telephone_event(p.payload) for p in packets]
    assert [p.payload_type for p in packets] == [101] * 5
    assert [p.marker for p in packets] == [True, False, False, False, False]
    assert [p.sequence for p in packets] == [65535, 0, 1, 2, 3]
    assert {p.timestamp for p in packets} == {0xFFFF_FFA0} and {p.ssrc for p in packets} == {SSRC}
    assert [(e.event, e.end, e.duration) for e in events] == [
        (11, False, 400),
        (11, False, 800),
        (11, True, 960),
        (11, True, 960),
        (11, True, 960),
    ]
    assert audio.timestamp == 0xFFFF_FF00
    # the next audio packet follows the event: same SSRC, next sequence, timestamp moved on
    after = parse_rtp(sender.packet(bytes(160)))
    assert (after.sequence, after.timestamp, after.payload_type) == (
        4,
        0xFFFF_FFA0 + 960 - 2**32,
        0,
    )


def test_digit_packets_short_press_and_bad_arguments() -> None:
    sender = RtpSender(ssrc=1, sequence=0, timestamp=0)
    events = [parse_telephone_event(parse_rtp(d).payload) for d in digit_packets(sender, "A", 40)]
    assert [(e.end, e.duration) for e in events] == [(False, 320)] + [(True, 320)] * 3
    for digit, duration in [("E", 100), ("12", 100), ("", 100), ("1", 0), ("1", 8192)]:
        with pytest.raises(ValueError):
            digit_packets(sender, digit, duration)


def test_digit_packets_decode_to_the_digits() -> None:
    sender = RtpSender(ssrc=77)
    decoder = TelephoneEventDecoder()
    found = []
    for digit in "1234567890*#ABCD11":
        sender.packet(bytes(160))  # some audio between presses
        for data in digit_packets(sender, digit, payload_type=96):
            result = decoder.receive(parse_rtp(data))
            if result is not None:
                found.append(result.digit)
    assert "".join(found) == "1234567890*#ABCD11"


# --- SIPp's RFC 2833 pcaps -------------------------------------------------------------------


def pcap_rtp(path: Path) -> list[RtpPacket]:
    """Every RTP packet of a classic pcap of Ethernet/IPv4/UDP frames (stdlib only)."""
    data = path.read_bytes()
    magic = data[:4]
    order = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">"}[magic]
    (linktype,) = struct.unpack_from(order + "I", data, 20)
    assert linktype == 1, "Ethernet captures only"
    packets = []
    offset = 24
    while offset < len(data):
        _, _, captured, _ = struct.unpack_from(order + "IIII", data, offset)
        frame = data[offset + 16 : offset + 16 + captured]
        offset += 16 + captured
        (ethertype,) = struct.unpack_from("!H", frame, 12)
        ip = frame[14:]
        header_length = (ip[0] & 0x0F) * 4
        assert ethertype == 0x0800 and ip[0] >> 4 == 4 and ip[9] == 17, "IPv4/UDP only"
        udp = ip[header_length:]
        (udp_length,) = struct.unpack_from("!H", udp, 4)
        packets.append(parse_rtp(udp[8:udp_length]))
    return packets


SIPP_PCAPS = {f"dtmf_2833_{d}.pcap": d for d in "0123456789"}
SIPP_PCAPS |= {"dtmf_2833_pound.pcap": "#", "dtmf_2833_star.pcap": "*"}


@pytest.mark.parametrize(("name", "digit"), sorted(SIPP_PCAPS.items()))
def test_sipp_pcap_gives_exactly_its_digit(name: str, digit: str) -> None:
    path = SIPP_DIR / name
    assert path.exists(), f"{path} missing: install Debian's sip-tester (scripts/setup.sh --test)"
    packets = pcap_rtp(path)
    # what the capture holds: a zero-duration start with the marker, six updates 20 ms apart,
    # then the end packet three times with one sequence number
    assert [p.payload_type for p in packets] == [101] * 10
    assert [p.marker for p in packets] == [True] + [False] * 9
    assert len({(p.ssrc, p.timestamp) for p in packets}) == 1
    events = [parse_telephone_event(p.payload) for p in packets]
    assert {e.event for e in events} == {DIGITS.index(digit)}
    assert [e.duration for e in events] == [0, 320, 640, 960, 1280, 1600, 1920, 2240, 2240, 2240]
    assert [e.end for e in events] == [False] * 7 + [True] * 3
    assert len({p.sequence for p in packets[7:]}) == 1
    decoder = TelephoneEventDecoder()
    results = [decoder.receive(p) for p in packets]
    # the zero-duration start is ignored (RFC 4733 §2.3.5): the first update reports the digit
    assert results == [None, DigitDetected(digit, packets[0].timestamp, 40)] + [None] * 8


def test_all_sipp_pcaps_in_one_stream_give_every_digit_once() -> None:
    decoder = TelephoneEventDecoder()
    found = []
    for name in sorted(SIPP_PCAPS, key=lambda n: parse_rtp_first_ts(SIPP_DIR / n)):
        for packet in pcap_rtp(SIPP_DIR / name):
            result = decoder.receive(packet)
            if result is not None:
                found.append(result.digit)
    assert sorted(found) == sorted(SIPP_PCAPS.values())
    assert len(found) == 12


def parse_rtp_first_ts(path: Path) -> int:
    return pcap_rtp(path)[0].timestamp


def test_build_rtp_matches_sender_output_for_events() -> None:
    sender = RtpSender(ssrc=SSRC, sequence=10, timestamp=320)
    first = digit_packets(sender, "5", duration_ms=60)[0]
    expected = build_rtp(101, 10, 320, SSRC, encode_telephone_event(5, False, 10, 400), True)
    assert first == expected
