"""Parsing, building and framing of SIP messages, plus the UAS request checks."""

from __future__ import annotations

import random

import pytest
from sipmessage import Request, Response

from bridge.sip.message import (
    SipError,
    StreamFramer,
    encode,
    error_response,
    make_response,
    new_branch,
    new_call_id,
    new_tag,
    parse_message,
)
from bridge.sip.validate import check_request, sdp_body

ALLOWED = frozenset({"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO"})
SDP = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"


def invite(extra: str = "", body: bytes = SDP, content_length: str | None = None) -> bytes:
    length = str(len(body)) if content_length is None else content_length
    return (
        "INVITE sip:room@bridge.example.com SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bKabc;rport\r\n"
        "Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKdef\r\n"
        "Max-Forwards: 70\r\n"
        'From: "Alice" <sip:alice@example.com>;tag=a1\r\n'
        "To: <sip:room@bridge.example.com>\r\n"
        "Call-ID: call-1@example.com\r\n"
        "CSeq: 1 INVITE\r\n"
        "Contact: <sip:alice@192.0.2.1:5062>\r\n"
        "Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n"
        "Content-Type: application/sdp\r\n"
        f"{extra}"
        f"Content-Length: {length}\r\n"
        "\r\n"
    ).encode() + body


def parse_request(data: bytes) -> Request:
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


def status_of(data: bytes) -> int | None:
    with pytest.raises(SipError) as caught:
        parse_message(data)
    return caught.value.status


def test_parses_a_plain_invite() -> None:
    request = parse_request(invite())
    assert request.method == "INVITE"
    assert str(request.uri) == "sip:room@bridge.example.com"
    assert request.body == SDP
    assert request.headers.getlist("Record-Route") == [
        "<sip:p1.example.com;lr>",
        "<sip:p2.example.com;lr>",
    ]


def test_accepts_lf_only_line_ends() -> None:
    head, _, body = invite().partition(b"\r\n\r\n")
    request = parse_request(head.replace(b"\r\n", b"\n") + b"\n\n" + body)
    assert request.call_id == "call-1@example.com"
    assert request.body == SDP


def test_ignores_bytes_after_the_body() -> None:
    assert parse_request(invite() + b"garbage").body == SDP


def test_without_content_length_the_datagram_body_runs_to_the_end() -> None:
    data = invite().replace(f"Content-Length: {len(SDP)}\r\n".encode(), b"")
    assert parse_request(data).body == SDP


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (invite(content_length="9999"), 400),
        (invite(content_length="-1"), 400),
        (invite(extra="Content-Length: 3\r\n"), 400),
        (invite().replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1), 505),
        (invite().replace(b"sip:room@", b"http:room@", 1), 416),
        (invite().replace(b"INVITE sip:room@bridge.example.com", b"INVITE <sip:a@b>", 1), 400),
        (invite().replace(b"CSeq: 1 INVITE", b"CSeq: 1 BYE"), 400),
        (invite().replace(b"Call-ID: call-1@example.com\r\n", b""), 400),
        (invite(extra="To: <sip:other@example.com>\r\n"), 400),
        (invite().replace(b"From: ", b"From: <sip:broken"), 400),
        (invite().replace(b"CSeq: 1 ", b"CSeq: 4294967296 "), 400),
        (b"SIP/2.0 700 Odd\r\n\r\n", None),
        (invite() + b"x" * 70000, 513),
    ],
)
def test_rejects_with_the_right_status(data: bytes, status: int | None) -> None:
    assert status_of(data) == status


def test_missing_header_is_named() -> None:
    with pytest.raises(SipError) as caught:
        parse_message(invite().replace(b"Call-ID: call-1@example.com\r\n", b""))
    assert caught.value.reason == "Missing Call-ID header"


def test_max_size_is_configurable() -> None:
    with pytest.raises(SipError) as caught:
        parse_message(invite(), max_size=100)
    assert caught.value.status == 513


def test_no_exception_but_sip_error_for_garbage() -> None:
    rng = random.Random(4475)
    valid = invite()
    samples = [bytes(rng.randrange(256) for _ in range(rng.randrange(300))) for _ in range(300)]
    samples += [valid[:cut] for cut in range(0, len(valid), 7)]
    samples += [
        bytes(b if rng.random() > 0.02 else rng.randrange(256) for b in valid) for _ in range(300)
    ]
    for sample in samples:
        try:
            parse_message(sample)
        except SipError as error:
            error_response(sample, error)


def test_error_response_copies_the_identity_headers() -> None:
    data = invite().replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1)
    with pytest.raises(SipError) as caught:
        parse_message(data)
    reply = error_response(data, caught.value)
    assert reply is not None
    lines = reply.decode().split("\r\n")
    assert lines[0] == "SIP/2.0 505 SIP version SIP/3.0 not supported"
    assert lines[1:3] == [
        "Via: SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bKabc;rport",
        "Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKdef",
    ]
    assert lines[3] == 'From: "Alice" <sip:alice@example.com>;tag=a1'
    assert lines[4].startswith("To: <sip:room@bridge.example.com>;tag=")
    assert lines[5:] == [
        "Call-ID: call-1@example.com",
        "CSeq: 1 INVITE",
        "Content-Length: 0",
        "",
        "",
    ]


def test_error_response_is_none_without_via_or_for_responses() -> None:
    error = SipError(400, "Bad")
    assert error_response(b"OPTIONS sip:a@b SIP/2.0\r\nFrom: x\r\n\r\n", error) is None
    assert error_response(b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n", error) is None
    assert error_response(invite(), SipError(None, "drop")) is None


def test_make_response_copies_headers_and_tags_to() -> None:
    request = parse_request(invite())
    response = make_response(
        request, 200, to_tag="t9", body=b"v=0\r\n", content_type="application/sdp"
    )
    assert response.phrase == "OK"
    assert response.headers.getlist("Via") == request.headers.getlist("Via")
    assert response.headers["To"] == "<sip:room@bridge.example.com>;tag=t9"
    assert response.headers.getlist("Record-Route") == request.headers.getlist("Record-Route")
    assert encode(response) == (
        b"SIP/2.0 200 OK\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bKabc;rport\r\n"
        b"Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKdef\r\n"
        b'From: "Alice" <sip:alice@example.com>;tag=a1\r\n'
        b"To: <sip:room@bridge.example.com>;tag=t9\r\n"
        b"Call-ID: call-1@example.com\r\n"
        b"CSeq: 1 INVITE\r\n"
        b"Record-Route: <sip:p1.example.com;lr>\r\n"
        b"Record-Route: <sip:p2.example.com;lr>\r\n"
        b"Content-Type: application/sdp\r\n"
        b"Content-Length: 5\r\n"
        b"\r\n"
        b"v=0\r\n"
    )


def test_make_response_keeps_an_existing_to_tag_and_100_has_none() -> None:
    request = parse_request(
        invite().replace(b"bridge.example.com>\r\n", b"bridge.example.com>;tag=x\r\n")
    )
    assert make_response(request, 486).headers["To"] == "<sip:room@bridge.example.com>;tag=x"
    fresh = parse_request(invite())
    assert make_response(fresh, 100).headers["To"] == "<sip:room@bridge.example.com>"
    assert make_response(fresh, 487, "Cancelled").phrase == "Cancelled"


def test_encode_replaces_a_wrong_content_length_and_round_trips() -> None:
    request = parse_request(invite())
    request.headers.set("Content-Length", "999")
    data = encode(request)
    assert data.count(b"Content-Length") == 1
    again = parse_request(data)
    assert again.body == SDP
    assert encode(again) == data


def test_stream_framer_byte_by_byte_with_keepalives() -> None:
    stream = b"\r\n\r\n" + invite() + b"\r\n" + invite()
    framer = StreamFramer()
    messages: list[bytes] = []
    for byte in stream:
        messages += framer.feed(bytes([byte]))
    assert messages == [invite(), invite()]


def test_stream_framer_needs_content_length() -> None:
    data = invite().replace(f"Content-Length: {len(SDP)}\r\n".encode(), b"")
    with pytest.raises(SipError) as caught:
        StreamFramer().feed(data)
    assert caught.value.status == 400


def test_stream_framer_rejects_oversized_messages() -> None:
    with pytest.raises(SipError) as caught:
        StreamFramer(max_size=1000).feed(invite(content_length="5000"))
    assert caught.value.status == 513
    with pytest.raises(SipError):
        StreamFramer(max_size=1000).feed(b"X" * 1001)


def test_identifiers() -> None:
    assert new_branch().startswith("z9hG4bK") and len(new_branch()) == 23
    assert new_branch() != new_branch()
    assert len(new_tag()) == 12
    assert new_call_id("bridge.example.com").endswith("@bridge.example.com")


# -- check_request ------------------------------------------------------------


def check_status(
    request: Request, **options: frozenset[str]
) -> tuple[int | None, tuple[tuple[str, str], ...]]:
    with pytest.raises(SipError) as caught:
        check_request(request, allowed_methods=options.pop("allowed", ALLOWED), **options)
    return caught.value.status, caught.value.headers


def test_check_request_accepts_a_plain_invite() -> None:
    check_request(parse_request(invite()), allowed_methods=ALLOWED)


def test_register_is_405_and_unknown_methods_501() -> None:
    request = parse_request(invite())
    request.method = "REGISTER"
    assert check_status(request) == (405, (("Allow", "ACK, BYE, CANCEL, INFO, INVITE, OPTIONS"),))
    request.method = "FOO"
    assert check_status(request)[0] == 501


def test_require_of_unknown_extension_is_420() -> None:
    request = parse_request(invite(extra="Require: 100rel, timer\r\n"))
    assert check_status(request, supported=frozenset({"timer"})) == (
        420,
        (("Unsupported", "100rel"),),
    )


def test_bad_max_forwards_is_400() -> None:
    request = parse_request(invite().replace(b"Max-Forwards: 70", b"Max-Forwards: 256"))
    assert check_status(request)[0] == 400


def test_unaccepted_body_is_415_with_accept() -> None:
    request = parse_request(invite().replace(b"application/sdp", b"text/plain"))
    assert check_status(request) == (415, (("Accept", "application/sdp"),))


def test_accept_without_sdp_is_406() -> None:
    request = parse_request(invite(extra="Accept: text/html\r\n"))
    assert check_status(request)[0] == 406
    check_request(parse_request(invite(extra="Accept: application/*\r\n")), allowed_methods=ALLOWED)


def test_multipart_with_an_sdp_part_is_accepted() -> None:
    body = (
        b"--b1\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
        b"--b1\r\nContent-Type: application/sdp\r\n\r\n" + SDP + b"\r\n--b1--\r\n"
    )
    data = invite(body=body).replace(
        b"Content-Type: application/sdp\r\n", b'Content-Type: multipart/mixed;boundary="b1"\r\n', 1
    )
    request = parse_request(data)
    check_request(request, allowed_methods=ALLOWED)
    assert sdp_body(request) == SDP


def test_sdp_body_of_plain_sdp_and_of_nothing() -> None:
    assert sdp_body(parse_request(invite())) == SDP
    assert sdp_body(parse_request(invite(body=b""))) is None


def test_responses_parse() -> None:
    response = parse_message(
        b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n"
        b"To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
    assert isinstance(response, Response)
    assert (response.code, response.phrase) == (180, "Ringing")
