"""The UA core driven with byte strings and an injected clock: no sockets, exact outcomes."""

from __future__ import annotations

from bridge.sip.message import parse_message
from bridge.sip.transaction import Outgoing, Peer
from bridge.sip.useragent import (
    CallConfirmed,
    CallEnded,
    IncomingCall,
    InfoReceived,
    UaEvent,
    UserAgent,
)

PHONE = Peer("127.0.0.1", 5070, "udp")
SDP = (
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0\r\n"
)


def request(
    method: str,
    *,
    branch: str = "z9hG4bKaaa",
    to_tag: str = "",
    cseq: int = 1,
    cseq_method: str | None = None,
    body: bytes = b"",
    call_id: str = "c1",
) -> bytes:
    to = f"<sip:room1@127.0.0.1>{';tag=' + to_tag if to_tag else ''}"
    content = "Content-Type: application/sdp\r\n" if body else ""
    return (
        f"{method} sip:room1@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch}\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=alice1\r\nTo: {to}\r\n"
        f"Call-ID: {call_id}\r\nCSeq: {cseq} {cseq_method or method}\r\n"
        f"Contact: <sip:alice@127.0.0.1:5070>\r\n{content}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def statuses(out: list[Outgoing]) -> list[tuple[int, str]]:
    result = []
    for item in out:
        message = parse_message(item.data)
        result.append((message.code, message.cseq.method))  # type: ignore[union-attr]
    return result


def events(ua: UserAgent) -> list[UaEvent]:
    found = []
    while (event := ua.next_event()) is not None:
        found.append(event)
    return found


def new_ua() -> UserAgent:
    return UserAgent(host="127.0.0.1", udp_port=5060, tcp_port=5060)


def test_options_answered_200_with_allow_and_accept() -> None:
    ua = new_ua()
    ua.receive_data(request("OPTIONS"), PHONE, 0.0)
    (out,) = ua.datagrams_to_send()
    response = parse_message(out.data)
    assert response.code == 200  # type: ignore[union-attr]
    assert "INVITE" in response.headers["Allow"] and "BYE" in response.headers["Allow"]
    assert response.headers["Accept"] == "application/sdp"


def test_unknown_method_501_register_405_and_unknown_dialog_481() -> None:
    ua = new_ua()
    ua.receive_data(request("FOO"), PHONE, 0.0)
    ua.receive_data(request("REGISTER", branch="z9hG4bKreg"), PHONE, 0.0)
    ua.receive_data(request("BYE", branch="z9hG4bKbye", to_tag="nosuch"), PHONE, 0.0)
    ua.receive_data(request("INFO", branch="z9hG4bKinfo", to_tag="nosuch"), PHONE, 0.0)
    assert statuses(ua.datagrams_to_send()) == [
        (501, "FOO"),
        (405, "REGISTER"),
        (481, "BYE"),
        (481, "INFO"),
    ]
    assert events(ua) == []


def test_cancel_before_answer_gives_200_and_487() -> None:
    ua = new_ua()
    ua.receive_data(request("INVITE", body=SDP), PHONE, 0.0)
    (incoming,) = events(ua)
    assert isinstance(incoming, IncomingCall) and incoming.offer == SDP
    assert statuses(ua.datagrams_to_send()) == [(100, "INVITE")]
    ua.receive_data(request("CANCEL", cseq_method="CANCEL"), PHONE, 1.0)
    assert statuses(ua.datagrams_to_send()) == [(200, "CANCEL"), (487, "INVITE")]
    (ended,) = events(ua)
    assert isinstance(ended, CallEnded) and ended.reason == "cancelled"
    # the 487 is repeated on Timer G until the ACK, which stops it
    ua.handle_timer(1.5)
    assert statuses(ua.datagrams_to_send()) == [(487, "INVITE")]
    ua.receive_data(request("ACK", to_tag=incoming.call.local_tag), PHONE, 1.6)
    ua.handle_timer(10.0)
    assert ua.datagrams_to_send() == []


def test_cancel_for_unknown_invite_gets_481() -> None:
    ua = new_ua()
    ua.receive_data(request("CANCEL", branch="z9hG4bKother"), PHONE, 0.0)
    assert statuses(ua.datagrams_to_send()) == [(481, "CANCEL")]


def test_answered_call_confirmed_by_ack_and_ended_by_bye() -> None:
    ua = new_ua()
    ua.receive_data(request("INVITE", body=SDP), PHONE, 0.0)
    (incoming,) = events(ua)
    ua.answer(incoming.call, SDP, 0.0)
    out = ua.datagrams_to_send()
    assert statuses(out) == [(100, "INVITE"), (200, "INVITE")]
    ok = parse_message(out[1].data)
    assert ok.body == SDP and ok.contact[0].uri.user == "room1"
    tag = ok.to_address.parameters["tag"]
    # 2xx repeated at T1 until the ACK arrives
    ua.handle_timer(0.5)
    assert statuses(ua.datagrams_to_send()) == [(200, "INVITE")]
    ua.receive_data(request("ACK", branch="z9hG4bKack", to_tag=tag), PHONE, 0.6)
    (confirmed,) = events(ua)
    assert isinstance(confirmed, CallConfirmed) and confirmed.call is incoming.call
    ua.handle_timer(1.5)
    assert ua.datagrams_to_send() == []
    ua.receive_data(request("BYE", branch="z9hG4bKbye", to_tag=tag, cseq=2), PHONE, 2.0)
    assert statuses(ua.datagrams_to_send()) == [(200, "BYE")]
    (ended,) = events(ua)
    assert isinstance(ended, CallEnded) and ended.reason == "bye"
    # a retransmitted BYE is absorbed by its transaction and answered again, no new event
    ua.receive_data(request("BYE", branch="z9hG4bKbye", to_tag=tag, cseq=2), PHONE, 2.1)
    assert statuses(ua.datagrams_to_send()) == [(200, "BYE")]
    assert events(ua) == []


def test_missing_ack_ends_the_call_with_bye() -> None:
    ua = new_ua()
    ua.receive_data(request("INVITE", body=SDP), PHONE, 0.0)
    (incoming,) = events(ua)
    ua.answer(incoming.call, SDP, 0.0)
    ua.datagrams_to_send()
    ua.handle_timer(32.0)  # Timer L = 64*T1: the 2xx was never acknowledged
    (ended,) = events(ua)
    assert isinstance(ended, CallEnded) and ended.reason == "no_ack"
    sent = [parse_message(o.data) for o in ua.datagrams_to_send()]
    assert [m.method for m in sent if hasattr(m, "method")] == ["BYE"]


def test_reinvite_in_unknown_dialog_gets_481_and_retransmitted_invite_one_call() -> None:
    ua = new_ua()
    ua.receive_data(request("INVITE", body=SDP, to_tag="zzz"), PHONE, 0.0)
    assert statuses(ua.datagrams_to_send())[-1] == (481, "INVITE")
    ua.receive_data(request("INVITE", branch="z9hG4bKnew", body=SDP, call_id="c2"), PHONE, 0.0)
    ua.receive_data(request("INVITE", branch="z9hG4bKnew", body=SDP, call_id="c2"), PHONE, 0.3)
    assert len([e for e in events(ua) if isinstance(e, IncomingCall)]) == 1


def info(tag: str, body: bytes, content_type: str, cseq: int, branch: str) -> bytes:
    data = request("INFO", branch=branch, to_tag=tag, cseq=cseq)
    head, _ = data.split(b"\r\n\r\n", 1)
    head = head.replace(b"Content-Length: 0", f"Content-Type: {content_type}".encode())
    return head + f"\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


def test_info_digits_answered_200_malformed_400_other_types_415() -> None:
    ua = new_ua()
    ua.receive_data(request("INVITE", body=SDP), PHONE, 0.0)
    (incoming,) = events(ua)
    ua.answer(incoming.call, SDP, 0.0)
    ua.receive_data(request("ACK", branch="z9hG4bKack", to_tag=incoming.call.local_tag), PHONE, 0.1)
    events(ua)
    ua.datagrams_to_send()
    tag = incoming.call.local_tag
    relay = "application/dtmf-relay"
    ua.receive_data(info(tag, b"Signal=5\r\nDuration=160\r\n", relay, 2, "z9hG4bKi1"), PHONE, 1)
    ua.receive_data(info(tag, b"Signal=\r\n", relay, 3, "z9hG4bKi2"), PHONE, 1)
    ua.receive_data(info(tag, b"hello", "text/plain", 4, "z9hG4bKi3"), PHONE, 1)
    assert statuses(ua.datagrams_to_send()) == [(200, "INFO"), (400, "INFO"), (415, "INFO")]
    (digit,) = events(ua)
    assert isinstance(digit, InfoReceived) and digit.digit == "5"
