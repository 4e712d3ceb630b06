"""SIP bytes for driving the UA core in unit tests: requests as a phone at PHONE sends them,
answers to the UA's own requests, and what the UA sent, parsed (sipmessage's parser: the UA's
responses may carry several Vias)."""

from __future__ import annotations

from sipmessage import Message, Request, Response

from bridge.sip.transaction import Peer
from bridge.sip.useragent import IncomingCall, UaEvent, UserAgent

PHONE = Peer("127.0.0.1", 5070, "udp")
SDP = (
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0\r\n"
)


def request(
    method: str,
    *,
    branch: str,
    to_tag: str = "",
    cseq: int = 1,
    headers: tuple[str, ...] = (),
    body: bytes = b"",
    call_id: str = "st-1",
) -> bytes:
    to = f"<sip:room1@127.0.0.1>{';tag=' + to_tag if to_tag else ''}"
    lines = [
        f"{method} sip:room1@127.0.0.1:5060 SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch}",
        "Max-Forwards: 70",
        "From: <sip:alice@127.0.0.1>;tag=alice1",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        "Contact: <sip:alice@127.0.0.1:5070>",
        *headers,
        *(["Content-Type: application/sdp"] if body else []),
        f"Content-Length: {len(body)}",
        "",
        "",
    ]
    return "\r\n".join(lines).encode() + body


def drain(ua: UserAgent) -> list[UaEvent]:
    found = []
    while (event := ua.next_event()) is not None:
        found.append(event)
    return found


def sent(ua: UserAgent) -> list[Message]:
    return [Message.parse(out.data) for out in ua.datagrams_to_send()]


def finals(messages: list[Message]) -> list[Response]:
    return [m for m in messages if isinstance(m, Response) and m.code >= 200]


def requests(messages: list[Message]) -> list[Request]:
    return [m for m in messages if isinstance(m, Request)]


def answered(*headers: str) -> tuple[UserAgent, Response]:
    """A call answered and ACKed at t=0 whose INVITE carried `headers`; returns our 200."""
    ua = UserAgent(host="127.0.0.1", udp_port=5060, tcp_port=5060)
    ua.receive_data(request("INVITE", branch="z9hG4bKi", headers=headers, body=SDP), PHONE, 0.0)
    (incoming,) = drain(ua)
    assert isinstance(incoming, IncomingCall)
    ua.answer(incoming.call, SDP, 0.0)
    (ok,) = finals(sent(ua))
    tag = incoming.call.local_tag
    ua.receive_data(request("ACK", branch="z9hG4bKa", to_tag=tag), PHONE, 0.05)
    drain(ua)
    return ua, ok


def session_deadline(ua: UserAgent) -> float:
    (call,) = ua.calls.values()
    assert call.session is not None
    return call.session.deadline


def reply(to: Request, code: int, *headers: str, body: bytes = b"") -> bytes:
    lines = [
        f"SIP/2.0 {code} Whatever",
        f"Via: {to.headers.getlist('Via')[0]}",
        f"From: {to.headers['From']}",
        f"To: {to.headers['To']}",
        f"Call-ID: {to.call_id}",
        f"CSeq: {to.headers['CSeq']}",
        *headers,
        *(["Content-Type: application/sdp"] if body else []),
        f"Content-Length: {len(body)}",
        "",
        "",
    ]
    return "\r\n".join(lines).encode() + body
