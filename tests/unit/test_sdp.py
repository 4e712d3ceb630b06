"""SDP parsing and RFC 3264 offer/answer against bodies as real phones send them."""

from __future__ import annotations

import pytest

from bridge.sip.sdp import (
    AudioSession,
    MediaFormat,
    Origin,
    SdpError,
    build_answer,
    build_offer,
    negotiate_answer,
    negotiate_offer,
    parse_sdp,
)


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


PCMU = MediaFormat(0, "PCMU", 8000)
PCMA = MediaFormat(8, "PCMA", 8000)

BARESIP = crlf(
    """v=0
o=- 1290217612 3127356366 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 10010 RTP/AVP 96 9 0 8 101
b=AS:64
a=rtpmap:96 opus/48000/2
a=fmtp:96 stereo=1;sprop-stereo=1
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=rtcp-rsize
a=ptime:20
a=sendrecv
"""
)

LINPHONE = crlf(
    """v=0
o=alice 3216 1290 IN IP4 192.168.1.10
s=Talk
c=IN IP4 192.168.1.10
t=0 0
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics
a=record:off
m=audio 7078 RTP/AVP 96 97 98 0 8 18 101 99 100
a=rtpmap:96 opus/48000/2
a=fmtp:96 useinbandfec=1
a=rtpmap:97 speex/16000
a=fmtp:97 vbr=on
a=rtpmap:98 speex/8000
a=fmtp:98 vbr=on
a=fmtp:18 annexb=yes
a=rtpmap:101 telephone-event/48000
a=rtpmap:99 telephone-event/16000
a=rtpmap:100 telephone-event/8000
a=rtcp:7079
a=rtcp-fb:* trr-int 1000
m=video 9078 RTP/AVP 96 97
a=rtpmap:96 VP8/90000
a=rtpmap:97 H264/90000
a=fmtp:97 profile-level-id=42801F
"""
)

# SIPp's built-in uac scenario: PCMU only, no telephone-event.
SIPP_UAC = crlf(
    """v=0
o=user1 53655765 2353687637 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
"""
)

ASTERISK = crlf(
    """v=0
o=- 1234 1234 IN IP4 10.0.0.5
s=Asterisk
c=IN IP4 10.0.0.5
t=0 0
m=audio 13000 RTP/AVP 18 9 3 8 0 96
a=rtpmap:18 G729/8000
a=fmtp:18 annexb=no
a=rtpmap:9 G722/8000
a=rtpmap:3 GSM/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:96 telephone-event/8000
a=fmtp:96 0-16
a=ptime:20
a=maxptime:150
a=sendrecv
"""
)

# Cisco phones list static types without rtpmap lines for them.
CISCO_LF_ONLY = b"""v=0
o=CiscoSystemsSIP-GW-UserAgent 4412 2856 IN IP4 10.1.1.20
s=SIP Call
c=IN IP4 10.1.1.20
t=0 0
m=audio 16384 RTP/AVP 0 8 18 101
c=IN IP4 10.1.1.21
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
"""


# --------------------------------------------------------------------------- parsing


def test_parse_baresip_offer_fields() -> None:
    sdp = parse_sdp(BARESIP)
    assert sdp.origin == Origin("-", "1290217612", "3127356366", "IN", "IP4", "127.0.0.1")
    assert sdp.session_name == "-"
    assert sdp.connection == "127.0.0.1"
    assert sdp.direction is None
    (audio,) = sdp.media
    assert (audio.media, audio.port, audio.proto) == ("audio", 10010, "RTP/AVP")
    assert audio.formats == (
        MediaFormat(96, "opus", 48000, 2, "stereo=1;sprop-stereo=1"),
        MediaFormat(9, "G722", 8000),
        PCMU,
        PCMA,
        MediaFormat(101, "telephone-event", 8000, 1, "0-15"),
    )
    assert audio.format_ids == ("96", "9", "0", "8", "101")
    assert audio.direction == "sendrecv"
    assert audio.ptime == 20
    assert audio.connection is None
    assert ("rtcp-rsize", None) in audio.attributes


def test_parse_keeps_unknown_session_attributes() -> None:
    sdp = parse_sdp(LINPHONE)
    assert sdp.attributes == (
        ("rtcp-xr", "rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics"),
        ("record", "off"),
    )
    assert [m.media for m in sdp.media] == ["audio", "video"]
    assert sdp.media[1].formats == (
        MediaFormat(96, "VP8", 90000),
        MediaFormat(97, "H264", 90000, 1, "profile-level-id=42801F"),
    )


def test_parse_lf_only_and_static_types_without_rtpmap() -> None:
    sdp = parse_sdp(CISCO_LF_ONLY)
    (audio,) = sdp.media
    assert audio.formats[:3] == (PCMU, PCMA, MediaFormat(18, "G729", 8000))
    assert audio.connection == "10.1.1.21"
    assert sdp.connection_for(audio) == "10.1.1.21"


def test_parse_dynamic_type_without_rtpmap_is_kept_only_in_format_ids() -> None:
    body = crlf(
        "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\nm=audio 4000 RTP/AVP 0 99\n"
    )
    (audio,) = parse_sdp(body).media
    assert audio.formats == (PCMU,)
    assert audio.format_ids == ("0", "99")


def test_parse_ipv6_connection_and_multicast_ttl() -> None:
    body = crlf(
        "v=0\no=- 1 1 IN IP6 ::1\ns=-\nc=IN IP6 2001:db8::5\nt=0 0\nm=audio 4000 RTP/AVP 0\n"
    )
    assert parse_sdp(body).connection == "2001:db8::5"
    body = crlf(
        "v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nc=IN IP4 224.2.1.1/127\nt=0 0\nm=audio 4000 RTP/AVP 0\n"
    )
    assert parse_sdp(body).connection == "224.2.1.1"


def test_parse_non_rtp_stream_keeps_its_format_tokens() -> None:
    body = crlf(
        "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\n"
        "m=audio 4000 RTP/AVP 0\nm=image 4002 udptl t38\nm=application 9 TCP/BFCP *\n"
    )
    sdp = parse_sdp(body)
    assert [(m.proto, m.format_ids, m.formats) for m in sdp.media[1:]] == [
        ("udptl", ("t38",), ()),
        ("TCP/BFCP", ("*",), ()),
    ]


HEAD = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "SDP body is empty"),
        (b"\xff\xfe", "SDP is not valid UTF-8 (byte 0)"),
        (b"o=- 1 1 IN IP4 1.2.3.4\r\nv=0\r\n", "SDP line 1: expected 'v=0' first"),
        (b"v=1\r\n", "SDP line 1: expected 'v=0' first, got 'v=1'"),
        (HEAD.encode() + b"garbage\r\n", "SDP line 6: not a '<type>=<value>' line: 'garbage'"),
        (HEAD.encode() + b"M=audio 1 RTP/AVP 0\r\n", "SDP line 6: not a '<type>=<value>'"),
        (HEAD.encode() + b"v=0\r\n", "SDP line 6: second v= line"),
        (b"v=0\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nm=audio 4 RTP/AVP 0\r\n", "SDP has no o= line"),
        (b"v=0\r\no=- 1 1 IN IP4\r\n", "SDP line 2: bad o= line 'o=- 1 1 IN IP4'"),
        (
            HEAD.encode() + b"m=audio x RTP/AVP 0\r\n",
            "SDP line 6: bad m= line 'm=audio x RTP/AVP 0'",
        ),
        (HEAD.encode() + b"m=audio 65536 RTP/AVP 0\r\n", "SDP line 6: bad m= line"),
        (HEAD.encode() + b"m=audio 4000 RTP/AVP\r\n", "SDP line 6: bad m= line"),
        (
            HEAD.encode() + b"m=audio 4000 RTP/AVP 0 128\r\n",
            "SDP line 6: bad payload type '128' in m= line",
        ),
        (HEAD.encode() + b"m=audio 4000 RTP/AVP 0 PCMU\r\n", "SDP line 6: bad payload type 'PCMU'"),
        (HEAD.encode() + b"c=IN IP4 300.1.1.1\r\n", "SDP line 6: bad address in c= line"),
        (HEAD.encode() + b"c=IN IP4 phone.example.com\r\n", "SDP line 6: bad address in c= line"),
        (HEAD.encode() + b"c=IN IP4 ::1\r\n", "SDP line 6: address type does not match"),
        (HEAD.encode() + b"c=IN IP4\r\n", "SDP line 6: bad c= line 'c=IN IP4'"),
        (HEAD.encode() + b"c=ATM NSAP 47\r\n", "SDP line 6: bad c= line"),
        (
            HEAD.encode() + b"m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU\r\n",
            "SDP line 7: bad rtpmap 'a=rtpmap:0 PCMU'",
        ),
        (
            HEAD.encode() + b"m=audio 4000 RTP/AVP 0\r\na=fmtp:x 0-15\r\n",
            "SDP line 7: bad fmtp",
        ),
        (
            HEAD.encode() + b"m=audio 4000 RTP/AVP 0\r\na=ptime:soon\r\n",
            "SDP line 7: bad ptime 'a=ptime:soon'",
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n",
            "SDP m= section 1 (audio) has no c= line",
        ),
    ],
)
def test_parse_rejects_malformed_with_400(body: bytes, message: str) -> None:
    with pytest.raises(SdpError) as info:
        parse_sdp(body)
    assert info.value.status == 400
    assert str(info.value).startswith(message)


def test_rejected_stream_without_connection_is_accepted() -> None:
    body = crlf("v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nt=0 0\nm=video 0 RTP/AVP 96\n")
    assert parse_sdp(body).media[0].port == 0


# --------------------------------------------------------------------------- offers


def test_negotiate_baresip_skips_opus_and_g722_and_takes_te_101() -> None:
    session = negotiate_offer(parse_sdp(BARESIP))
    assert session == AudioSession(
        remote_host="127.0.0.1",
        remote_port=10010,
        codec=PCMU,
        telephone_event=MediaFormat(101, "telephone-event", 8000, 1, "0-15"),
        direction="sendrecv",
        ptime=20,
    )
    assert not session.on_hold


def test_negotiate_linphone_takes_the_8000_hz_telephone_event() -> None:
    session = negotiate_offer(parse_sdp(LINPHONE))
    assert session.codec == PCMU
    assert session.telephone_event == MediaFormat(100, "telephone-event", 8000)
    assert (session.remote_host, session.remote_port) == ("192.168.1.10", 7078)


def test_negotiate_sipp_uac_without_telephone_event() -> None:
    session = negotiate_offer(parse_sdp(SIPP_UAC))
    assert session.codec == PCMU
    assert session.telephone_event is None
    assert session.ptime is None


def test_negotiate_follows_offerer_preference_not_ours() -> None:
    session = negotiate_offer(parse_sdp(ASTERISK), supported=("PCMU", "PCMA"))
    assert session.codec == PCMA
    assert session.telephone_event == MediaFormat(96, "telephone-event", 8000, 1, "0-16")


def test_negotiate_uses_media_level_connection() -> None:
    session = negotiate_offer(parse_sdp(CISCO_LF_ONLY))
    assert (session.remote_host, session.remote_port, session.codec) == ("10.1.1.21", 16384, PCMU)


def test_negotiate_encoding_names_are_case_insensitive() -> None:
    body = crlf(HEAD.replace("\r\n", "\n") + "m=audio 4000 RTP/AVP 97\na=rtpmap:97 pcma/8000\n")
    assert negotiate_offer(parse_sdp(body)).codec == MediaFormat(97, "pcma", 8000)


def test_negotiate_skips_rejected_and_srtp_audio_lines() -> None:
    body = crlf(
        HEAD.replace("\r\n", "\n")
        + "m=audio 0 RTP/AVP 0\nm=audio 5000 RTP/SAVP 0\nm=audio 6000 RTP/AVP 8 0\n"
    )
    session = negotiate_offer(parse_sdp(body))
    assert (session.remote_port, session.codec) == (6000, PCMA)


@pytest.mark.parametrize(
    ("media", "message"),
    [
        (
            "m=video 4000 RTP/AVP 96\na=rtpmap:96 VP8/90000\n",
            "SDP offer has no usable audio stream",
        ),
        ("m=audio 0 RTP/AVP 0\n", "SDP offer has no usable audio stream"),
        ("", "SDP offer has no usable audio stream"),
        (
            "m=audio 4000 RTP/AVP 18 3 101\na=rtpmap:101 telephone-event/8000\n",
            "no common codec: offered G729, GSM, supported PCMU, PCMA",
        ),
    ],
)
def test_negotiate_offer_without_common_ground_is_488(media: str, message: str) -> None:
    with pytest.raises(SdpError) as info:
        negotiate_offer(parse_sdp(crlf(HEAD.replace("\r\n", "\n") + media)))
    assert info.value.status == 488
    assert str(info.value) == message


# --------------------------------------------------------------------------- hold


def _offer_with(direction_lines: str, host: str = "10.0.0.1") -> AudioSession:
    body = (
        f"v=0\no=- 1 2 IN IP4 {host}\ns=-\nc=IN IP4 {host}\nt=0 0\n"
        f"m=audio 4000 RTP/AVP 0\n{direction_lines}"
    )
    return negotiate_offer(parse_sdp(body.encode()))


@pytest.mark.parametrize(
    ("lines", "host", "direction", "on_hold"),
    [
        ("", "10.0.0.1", "sendrecv", False),
        ("a=sendrecv\n", "10.0.0.1", "sendrecv", False),
        ("a=sendonly\n", "10.0.0.1", "sendonly", True),
        ("a=inactive\n", "10.0.0.1", "inactive", True),
        ("a=recvonly\n", "10.0.0.1", "recvonly", False),
        ("", "0.0.0.0", "sendrecv", True),
    ],
)
def test_direction_and_hold(lines: str, host: str, direction: str, on_hold: bool) -> None:
    session = _offer_with(lines, host)
    assert session.direction == direction
    assert session.on_hold is on_hold


def test_session_level_direction_applies_unless_media_overrides() -> None:
    base = "v=0\no=- 1 2 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\na=sendonly\n"
    session = negotiate_offer(parse_sdp(f"{base}m=audio 4000 RTP/AVP 0\n".encode()))
    assert session.direction == "sendonly"
    body = f"{base}m=audio 4000 RTP/AVP 0\na=sendrecv\n".encode()
    assert negotiate_offer(parse_sdp(body)).direction == "sendrecv"


# --------------------------------------------------------------------------- answers


def test_answer_to_linphone_rejects_video_with_same_formats() -> None:
    offer = parse_sdp(LINPHONE)
    answer = build_answer(
        offer,
        negotiate_offer(offer),
        local_host="192.168.1.2",
        local_port=20000,
        session_id=42,
        version=1,
    )
    assert answer == crlf(
        """v=0
o=confbridge 42 1 IN IP4 192.168.1.2
s=confbridge
c=IN IP4 192.168.1.2
t=0 0
m=audio 20000 RTP/AVP 0 100
a=rtpmap:0 PCMU/8000
a=rtpmap:100 telephone-event/8000
a=fmtp:100 0-16
a=ptime:20
a=sendrecv
m=video 0 RTP/AVP 96 97
"""
    )


def test_answer_keeps_offerers_telephone_event_pt_96() -> None:
    offer = parse_sdp(ASTERISK)
    answer = build_answer(
        offer,
        negotiate_offer(offer),
        local_host="10.0.0.9",
        local_port=20002,
        session_id=7,
        version=3,
    )
    assert b"m=audio 20002 RTP/AVP 8 96\r\n" in answer
    assert b"a=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-16\r\n" in answer


def test_answer_without_telephone_event_when_not_offered() -> None:
    offer = parse_sdp(SIPP_UAC)
    answer = build_answer(
        offer,
        negotiate_offer(offer),
        local_host="127.0.0.1",
        local_port=20004,
        session_id=1,
        version=1,
    )
    assert b"m=audio 20004 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n" in (
        answer
    )
    assert b"telephone-event" not in answer


@pytest.mark.parametrize(
    ("offered", "answered"),
    [
        ("sendrecv", "sendrecv"),
        ("sendonly", "recvonly"),
        ("recvonly", "sendonly"),
        ("inactive", "inactive"),
    ],
)
def test_answer_direction_per_rfc3264(offered: str, answered: str) -> None:
    body = HEAD.replace("\r\n", "\n") + f"m=audio 4000 RTP/AVP 0\na={offered}\n"
    offer = parse_sdp(body.encode())
    answer = parse_sdp(
        build_answer(
            offer,
            negotiate_offer(offer),
            local_host="10.0.0.2",
            local_port=20000,
            session_id=1,
            version=1,
        )
    )
    assert answer.media[0].direction == answered


def test_answer_rejects_extra_audio_lines_in_order() -> None:
    body = crlf(
        HEAD.replace("\r\n", "\n")
        + "m=audio 0 RTP/AVP 0\nm=audio 5000 RTP/SAVP 0 8\nm=audio 6000 RTP/AVP 8\n"
        + "m=audio 7000 RTP/AVP 0\nm=image 8000 udptl t38\n"
    )
    offer = parse_sdp(body)
    answer = parse_sdp(
        build_answer(
            offer,
            negotiate_offer(offer),
            local_host="10.0.0.2",
            local_port=20000,
            session_id=1,
            version=1,
        )
    )
    assert [(m.media, m.port, m.proto, m.format_ids) for m in answer.media] == [
        ("audio", 0, "RTP/AVP", ("0",)),
        ("audio", 0, "RTP/SAVP", ("0", "8")),
        ("audio", 20000, "RTP/AVP", ("8",)),
        ("audio", 0, "RTP/AVP", ("0",)),
        ("image", 0, "udptl", ("t38",)),
    ]


def test_answer_round_trips_to_the_same_codec() -> None:
    for body in (BARESIP, LINPHONE, SIPP_UAC, ASTERISK, CISCO_LF_ONLY):
        offer = parse_sdp(body)
        session = negotiate_offer(offer)
        answer = parse_sdp(
            build_answer(
                offer, session, local_host="10.0.0.2", local_port=21000, session_id=5, version=2
            )
        )
        back = negotiate_answer(answer, [session.codec.encoding])
        assert back.codec == MediaFormat(session.codec.payload_type, session.codec.encoding, 8000)
        assert (back.remote_host, back.remote_port, back.ptime) == ("10.0.0.2", 21000, 20)
        assert (back.telephone_event is None) == (session.telephone_event is None)
        assert answer.origin == Origin("confbridge", "5", "2", "IN", "IP4", "10.0.0.2")


def test_answer_over_ipv6_uses_ip6() -> None:
    offer = parse_sdp(SIPP_UAC)
    answer = build_answer(
        offer,
        negotiate_offer(offer),
        local_host="2001:db8::2",
        local_port=20000,
        session_id=9,
        version=1,
    )
    assert b"o=confbridge 9 1 IN IP6 2001:db8::2\r\n" in answer
    assert b"c=IN IP6 2001:db8::2\r\n" in answer


def test_answer_with_session_from_another_offer_is_misuse() -> None:
    other = negotiate_offer(parse_sdp(ASTERISK))  # PCMA
    with pytest.raises(ValueError, match="not negotiated from this offer"):
        build_answer(
            parse_sdp(SIPP_UAC),
            other,
            local_host="10.0.0.2",
            local_port=20000,
            session_id=1,
            version=1,
        )


# --------------------------------------------------------------------------- our offers


def test_build_offer_exact_bytes() -> None:
    offer = build_offer(local_host="127.0.0.1", local_port=20000, session_id=11, version=1)
    assert offer == crlf(
        """v=0
o=confbridge 11 1 IN IP4 127.0.0.1
s=confbridge
c=IN IP4 127.0.0.1
t=0 0
m=audio 20000 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=sendrecv
"""
    )


def test_build_offer_options() -> None:
    offer = build_offer(
        local_host="10.0.0.2",
        local_port=30000,
        session_id=1,
        version=2,
        codecs=("PCMA",),
        telephone_event_pt=None,
        direction="sendonly",
    )
    assert b"m=audio 30000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=ptime:20\r\na=sendonly\r\n" in (
        offer
    )
    assert b"telephone-event" not in offer


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"codecs": ("G729",)}, "no static payload type for codec 'G729'"),
        ({"codecs": ()}, "needs at least one codec"),
        ({"telephone_event_pt": 8}, "telephone_event_pt must be in 96..127"),
        ({"direction": "sideways"}, "direction must be one of"),
        ({"local_port": 0}, "local_port must be in 1..65535"),
        ({"local_host": "pbx.example.com"}, "does not appear to be an IPv4 or IPv6 address"),
    ],
)
def test_build_offer_misuse_raises_value_error(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "local_host": "10.0.0.2",
        "local_port": 20000,
        "session_id": 1,
        "version": 1,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=message) as info:
        build_offer(**args)  # type: ignore[arg-type]
    assert not isinstance(info.value, SdpError)


def test_negotiate_answer_from_peer() -> None:
    answer = crlf(
        """v=0
o=- 99 100 IN IP4 10.0.0.7
s=-
c=IN IP4 10.0.0.7
t=0 0
m=audio 40000 RTP/AVP 8 101
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=recvonly
"""
    )
    session = negotiate_answer(parse_sdp(answer), ("PCMU", "PCMA"))
    assert session == AudioSession(
        "10.0.0.7", 40000, PCMA, MediaFormat(101, "telephone-event", 8000, 1, "0-15"), "recvonly"
    )


@pytest.mark.parametrize(
    ("media", "message"),
    [
        ("m=audio 0 RTP/AVP 0\n", "SDP answer rejected the audio stream"),
        ("m=audio 40000 RTP/AVP 18\n", "SDP answer chose G729, none of the offered PCMU"),
        ("m=video 40000 RTP/AVP 31\n", "SDP answer rejected the audio stream"),
    ],
)
def test_negotiate_answer_488(media: str, message: str) -> None:
    with pytest.raises(SdpError) as info:
        negotiate_answer(parse_sdp(crlf(HEAD.replace("\r\n", "\n") + media)), ("PCMU",))
    assert info.value.status == 488
    assert str(info.value) == message


# --------------------------------------------------------------------------- wideband

WIDEBAND = ("OPUS", "G722", "PCMU", "PCMA")


def test_baresip_offer_gets_opus_mixed_as_mono_and_our_fmtp_in_the_answer() -> None:
    offer = parse_sdp(BARESIP)
    session = negotiate_offer(offer, WIDEBAND)
    assert session.codec == MediaFormat(96, "opus", 48000, 2, "stereo=1;sprop-stereo=1")
    assert session.telephone_event is None  # baresip's telephone-event is at 8000, not 48000
    answer = build_answer(offer, session, local_host="127.0.0.1", local_port=4000,
                          session_id=1, version=1).decode()
    assert "a=rtpmap:96 opus/48000/2\r\na=fmtp:96 useinbandfec=1;usedtx=1\r\n" in answer


def test_linphone_opus_takes_the_48000_hz_telephone_event() -> None:
    session = negotiate_offer(parse_sdp(LINPHONE), WIDEBAND)
    assert session.codec == MediaFormat(96, "opus", 48000, 2, "useinbandfec=1")
    assert session.telephone_event == MediaFormat(101, "telephone-event", 48000)


def test_g722_is_taken_at_its_8000_clock_only() -> None:
    offer = BARESIP.replace(b" 96 9 0 8 101", b" 9 0 8 101")
    session = negotiate_offer(parse_sdp(offer), ("G722", "PCMU"))
    assert session.codec == MediaFormat(9, "G722", 8000)
    assert session.telephone_event == MediaFormat(101, "telephone-event", 8000, 1, "0-15")
    odd = offer.replace(b"a=rtpmap:9 G722/8000", b"a=rtpmap:9 G722/16000")
    assert negotiate_offer(parse_sdp(odd), ("G722", "PCMU")).codec == PCMU


def test_our_offer_lists_opus_g722_g711_and_telephone_event_at_both_rates() -> None:
    body = build_offer(local_host="127.0.0.1", local_port=4000, session_id=1, version=1,
                       codecs=WIDEBAND).decode()
    assert "m=audio 4000 RTP/AVP 111 9 0 8 101 110\r\n" in body
    assert "a=rtpmap:111 opus/48000/2\r\na=fmtp:111 useinbandfec=1;usedtx=1\r\n" in body
    assert "a=rtpmap:101 telephone-event/8000\r\n" in body
    assert "a=rtpmap:110 telephone-event/48000\r\n" in body
    only_opus = build_offer(local_host="127.0.0.1", local_port=4000, session_id=1, version=1,
                            codecs=("OPUS",)).decode()
    assert "telephone-event/8000" not in only_opus


def test_offer_of_only_unsupported_codecs_is_488_listing_ours() -> None:
    offer = BARESIP.replace(b" 96 9 0 8 101", b" 18 101")
    with pytest.raises(SdpError) as info:
        negotiate_offer(parse_sdp(offer), WIDEBAND)
    assert info.value.status == 488
    assert str(info.value) == "no common codec: offered G729, supported OPUS, G722, PCMU, PCMA"
