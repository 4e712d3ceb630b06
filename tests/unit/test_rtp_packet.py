"""RTP sequence arithmetic, packet parsing/building and the outgoing stream."""

from __future__ import annotations

import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters
from aiortc.rtp import HeaderExtensionsMap
from aiortc.rtp import RtpPacket as AiortcRtpPacket

from bridge.rtp.packet import RtpError, RtpPacket, RtpSender, build_rtp, is_rtcp, parse_rtp
from bridge.rtp.seq import seq_delta, ts_delta, uint16_add, uint16_gt, uint32_add, uint32_gt

HEADER = bytes.fromhex("80 00 1234 000000a0 deadbeef")


def test_uint16_arithmetic_wraps() -> None:
    assert uint16_add(65535, 1) == 0
    assert uint16_add(0, -1) == 65535
    assert uint16_add(100, 5) == 105
    assert uint32_add(0xFFFF_FFFF, 2) == 1
    assert uint32_add(0, -160) == 0xFFFF_FF60


def test_uint16_gt_is_rfc3550_serial_compare() -> None:
    assert uint16_gt(1, 0)
    assert uint16_gt(0, 65535)
    assert not uint16_gt(65535, 0)
    assert not uint16_gt(7, 7)
    assert uint16_gt(32767, 0)
    # exactly half the space apart: neither is newer
    assert not uint16_gt(32768, 0)
    assert not uint16_gt(0, 32768)
    assert uint32_gt(0, 0xFFFF_FFFF)
    assert not uint32_gt(0xFFFF_FFFF, 0)


def test_seq_delta_is_signed_distance() -> None:
    assert seq_delta(0, 65535) == 1
    assert seq_delta(65535, 0) == -1
    assert seq_delta(32767, 0) == 32767
    assert seq_delta(32768, 0) == -32768
    assert seq_delta(10, 10) == 0
    assert ts_delta(160, 0xFFFF_FFFF - 159) == 320


def test_parse_plain_packet() -> None:
    packet = parse_rtp(HEADER + b"\xff" * 160)
    assert packet == RtpPacket(0, 0x1234, 160, 0xDEADBEEF, b"\xff" * 160, False)


def test_parse_marker_and_payload_type() -> None:
    packet = parse_rtp(bytes.fromhex("80 e5 0001 00000000 00000001") + b"\x01\x02")
    assert (packet.payload_type, packet.marker, packet.payload) == (101, True, b"\x01\x02")


def test_parse_strips_csrc_extension_and_padding() -> None:
    csrcs = bytes.fromhex("00000001 00000002")
    extension = bytes.fromhex("bede 0001 10610000")
    padding = b"\x00\x00\x03"
    data = bytes.fromhex("b2 08 0005 00000007 00000009") + csrcs + extension + b"abc" + padding
    assert parse_rtp(data) == RtpPacket(8, 5, 7, 9, b"abc", False)


def test_parse_empty_payload() -> None:
    assert parse_rtp(HEADER).payload == b""


def test_parse_agrees_with_aiortc_serialiser() -> None:
    extensions = HeaderExtensionsMap()
    parameters = RTCRtpHeaderExtensionParameters(id=1, uri="urn:ietf:params:rtp-hdrext:sdes:mid")
    extensions.configure(type("Parameters", (), {"headerExtensions": [parameters]})())
    theirs = AiortcRtpPacket(
        payload_type=8, marker=1, sequence_number=65535, timestamp=2**32 - 1, ssrc=42
    )
    theirs.payload = b"\xd5" * 160
    theirs.csrc = [7, 8, 9]
    theirs.padding_size = 5
    theirs.extensions.mid = "audio"
    ours = parse_rtp(theirs.serialize(extensions))
    assert ours == RtpPacket(8, 65535, 2**32 - 1, 42, b"\xd5" * 160, True)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (HEADER[:11], "too short"),
        (b"", "too short"),
        (bytes([0x40]) + HEADER[1:], "version 1"),
        (bytes([0x00]) + HEADER[1:], "version 0"),
        (bytes([0x8F]) + HEADER[1:] + b"\x00" * 56, "CSRC list past the end"),
        (bytes([0x90]) + HEADER[1:] + b"\xbe\xde", "extension header truncated"),
        (bytes([0x90]) + HEADER[1:] + bytes.fromhex("bede0002 00000000"), "extension past end"),
        (bytes([0x91]) + HEADER[1:] + b"\x00" * 4, "CSRC then extension past end"),
        (bytes([0xA0]) + HEADER[1:] + b"ab\x00", "padding length zero"),
        (bytes([0xA0]) + HEADER[1:] + b"ab\x04", "padding longer than the payload"),
        (bytes([0xA0]) + HEADER[1:11] + b"\x0c", "padding eats the header"),
    ],
)
def test_parse_rejects_malformed(data: bytes, reason: str) -> None:
    with pytest.raises(RtpError):
        parse_rtp(data)


def test_padding_may_consume_the_whole_payload() -> None:
    assert parse_rtp(bytes([0xA0]) + HEADER[1:] + b"\x00\x00\x03").payload == b""


def test_rtp_error_is_a_value_error() -> None:
    assert issubclass(RtpError, ValueError)


def test_build_exact_bytes_and_round_trip() -> None:
    assert build_rtp(0, 0x1234, 160, 0xDEADBEEF, b"\xff" * 4) == HEADER + b"\xff" * 4
    data = build_rtp(101, 65535, 2**32 - 1, 1, b"\x01\x80\x00\xa0", marker=True)
    assert data[:2] == b"\x80\xe5"
    assert parse_rtp(data) == RtpPacket(101, 65535, 2**32 - 1, 1, b"\x01\x80\x00\xa0", True)


def test_build_rejects_bad_payload_type() -> None:
    with pytest.raises(ValueError):
        build_rtp(128, 0, 0, 0, b"")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (bytes.fromhex("80c8 0006"), True),  # SR
        (bytes.fromhex("81c9 0007"), True),  # RR
        (bytes.fromhex("81cf 0001"), True),  # 207
        (bytes.fromhex("80c7 0001"), False),  # 199: RTP PT 71 with marker
        (bytes.fromhex("80d0 0001"), False),  # 208: RTP PT 80 with marker
        (HEADER, False),  # PCMU
        (bytes.fromhex("8080"), False),  # PCMU with marker
        (bytes.fromhex("8048"), True),  # PT 72 without marker, per RFC 5761 excluded range
        (b"\x80", False),
        (b"", False),
    ],
)
def test_is_rtcp(data: bytes, expected: bool) -> None:
    assert is_rtcp(data) is expected


def test_sender_keeps_one_continuous_stream() -> None:
    sender = RtpSender(payload_type=8, ssrc=0xCAFE, sequence=65534, timestamp=2**32 - 160)
    packets = [parse_rtp(sender.packet(b"\xd5" * 160)) for _ in range(3)]
    assert [p.sequence for p in packets] == [65534, 65535, 0]
    assert [p.timestamp for p in packets] == [2**32 - 160, 0, 160]
    assert {p.ssrc for p in packets} == {0xCAFE}
    assert {p.payload_type for p in packets} == {8}
    assert (sender.packets_sent, sender.octets_sent) == (3, 480)


def test_sender_event_packets_share_ssrc_and_sequence() -> None:
    sender = RtpSender(payload_type=0, ssrc=5, sequence=10, timestamp=1000)
    audio = parse_rtp(sender.packet(b"\xff" * 160))
    first = parse_rtp(sender.packet(b"\x05\x0a\x00\xa0", samples=0, marker=True, payload_type=101))
    again = parse_rtp(sender.packet(b"\x05\x0a\x01\x40", samples=0, payload_type=101))
    sender.skip(320)
    after = parse_rtp(sender.packet(b"\xff" * 160))
    assert [p.sequence for p in (audio, first, again, after)] == [10, 11, 12, 13]
    assert [p.timestamp for p in (audio, first, again, after)] == [1000, 1160, 1160, 1480]
    assert [p.payload_type for p in (audio, first, again, after)] == [0, 101, 101, 0]
    assert [p.marker for p in (audio, first, again, after)] == [False, True, False, False]


def test_sender_random_start_values() -> None:
    senders = [RtpSender() for _ in range(4)]
    assert len({s.ssrc for s in senders}) == 4  # 2**-30 chance of a false failure
    for s in senders:
        assert s.payload_type == 0
        assert 0 <= s.ssrc < 2**32 and 0 <= s.sequence < 2**16 and 0 <= s.timestamp < 2**32
