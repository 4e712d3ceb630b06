"""Route sets in both directions, driven through the UA core with bytes and a fake clock:
where the bridge's in-dialog requests go and with which Route headers (RFC 3261 §12, §16.12)."""

from __future__ import annotations

from sipmessage import URI, Message, Request

from bridge.sip.transaction import Outgoing, Peer
from bridge.sip.useragent import CallAnswered, IncomingCall, UaEvent, UserAgent

PROXY = Peer("127.0.0.2", 5090, "udp")
SDP = (
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0\r\n"
)


def proxied(
    method: str,
    *,
    branch: str,
    record_route: str = "<sip:127.0.0.2:5090;lr>",
    route: str = "",
    to_tag: str = "",
    cseq: int = 1,
    contact: str = "<sip:alice@127.0.0.1:5070>",
    body: bytes = b"",
    call_id: str = "routed-1",
) -> bytes:
    """A request as the proxy forwards it: its Via on top of the phone's, its Record-Route."""
    to = f"<sip:room1@127.0.0.1>{';tag=' + to_tag if to_tag else ''}"
    lines = [
        f"{method} sip:room1@127.0.0.1:5060 SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.2:5090;branch={branch}p",
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch}",
        "Max-Forwards: 69",
        *([f"Record-Route: {record_route}"] if record_route else []),
        *([f"Route: {route}"] if route else []),
        "From: <sip:alice@127.0.0.1>;tag=alice1",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        f"Contact: {contact}",
        *(["Content-Type: application/sdp"] if body else []),
        f"Content-Length: {len(body)}",
        "",
        "",
    ]
    return "\r\n".join(lines).encode() + body


def parse(data: bytes) -> Message:
    """Any message the bridge sent (sipmessage's own parser: responses through a proxy carry
    two Vias, which the bridge's strict receiving parser rightly refuses)."""
    return Message.parse(data)


def drain(ua: UserAgent) -> list[UaEvent]:
    found = []
    while (event := ua.next_event()) is not None:
        found.append(event)
    return found


def sent_requests(ua: UserAgent) -> list[tuple[Request, Peer]]:
    out: list[Outgoing] = ua.datagrams_to_send()
    pairs = [(parse(item.data), item.peer) for item in out]
    return [(message, peer) for message, peer in pairs if isinstance(message, Request)]


def answered_through_proxy(record_route: str) -> tuple[UserAgent, str]:
    ua = UserAgent(host="127.0.0.1", udp_port=5060, tcp_port=5060)
    ua.receive_data(
        proxied("INVITE", branch="z9hG4bKi1", record_route=record_route, body=SDP), PROXY, 0.0
    )
    (incoming,) = drain(ua)
    assert isinstance(incoming, IncomingCall)
    ua.answer(incoming.call, SDP, 0.0)
    (_trying, ok) = ua.datagrams_to_send()
    response = parse(ok.data)
    assert ok.peer == PROXY  # the 200 follows the Via back through the proxy
    assert response.headers.getlist("Record-Route") == [record_route]
    tag = incoming.call.local_tag
    ua.receive_data(proxied("ACK", branch="z9hG4bKa1", to_tag=tag, record_route=""), PROXY, 0.1)
    drain(ua)
    return ua, tag


def test_bye_sent_by_the_bridge_crosses_the_loose_routing_proxy() -> None:
    ua, _tag = answered_through_proxy("<sip:127.0.0.2:5090;lr>")
    (call,) = ua.calls.values()
    ua.hangup(call, 1.0, reason="ejected")
    ((bye, peer),) = sent_requests(ua)
    assert bye.method == "BYE" and peer == PROXY
    assert str(bye.uri) == "sip:alice@127.0.0.1:5070"
    assert bye.headers.getlist("Route") == ["<sip:127.0.0.2:5090;lr>"]


def test_strict_router_gets_the_request_uri_and_the_target_goes_last() -> None:
    ua, _tag = answered_through_proxy("<sip:127.0.0.2:5090>")
    (call,) = ua.calls.values()
    ua.hangup(call, 1.0)
    ((bye, peer),) = sent_requests(ua)
    assert peer == PROXY and str(bye.uri) == "sip:127.0.0.2:5090"
    assert bye.headers.getlist("Route") == ["<sip:alice@127.0.0.1:5070>"]


def test_reinvite_refreshes_the_target_and_the_route_set_stays() -> None:
    ua, tag = answered_through_proxy("<sip:127.0.0.2:5090;lr>")
    (call,) = ua.calls.values()
    ua.receive_data(
        proxied(
            "INVITE",
            branch="z9hG4bKr1",
            to_tag=tag,
            cseq=2,
            body=SDP,
            record_route="<sip:127.0.0.9:5099;lr>",
            contact="<sip:alice@127.0.0.1:5072>",
        ),
        PROXY,
        1.0,
    )
    drain(ua)
    ua.answer_reinvite(call, SDP, 1.0)
    ua.datagrams_to_send()
    ua.hangup(call, 2.0)
    ((bye, peer),) = sent_requests(ua)
    assert peer == PROXY and str(bye.uri) == "sip:alice@127.0.0.1:5072"
    assert bye.headers.getlist("Route") == ["<sip:127.0.0.2:5090;lr>"]


def test_outgoing_call_routes_ack_and_bye_by_the_reversed_record_route() -> None:
    ua = UserAgent(host="127.0.0.1", udp_port=5060, tcp_port=5060)
    call = ua.invite(
        target=URI.parse("sip:bob@127.0.0.3:5080"),
        peer=PROXY,
        room="room1",
        caller="room1",
        sdp=SDP,
        now=0.0,
    )
    ((invite, peer),) = sent_requests(ua)
    assert peer == PROXY
    via = invite.headers.getlist("Via")[0]
    ok = (
        "SIP/2.0 200 OK\r\n"
        f"Via: {via}\r\n"
        "Record-Route: <sip:127.0.0.4:5094;lr>, <sip:127.0.0.2:5090;lr>\r\n"
        f"From: {invite.headers['From']}\r\nTo: <sip:bob@127.0.0.3:5080>;tag=bob1\r\n"
        f"Call-ID: {invite.call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:bob@127.0.0.3:5080>\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(SDP)}\r\n\r\n"
    ).encode() + SDP
    ua.receive_data(ok, PROXY, 0.2)
    assert any(isinstance(event, CallAnswered) for event in drain(ua))
    ((ack, peer),) = sent_requests(ua)
    assert ack.method == "ACK" and peer == PROXY and str(ack.uri) == "sip:bob@127.0.0.3:5080"
    assert ack.headers.getlist("Route") == ["<sip:127.0.0.2:5090;lr>", "<sip:127.0.0.4:5094;lr>"]
    ua.hangup(call, 1.0)
    ((bye, peer),) = sent_requests(ua)
    assert bye.method == "BYE" and peer == PROXY
    assert bye.headers.getlist("Route") == ["<sip:127.0.0.2:5090;lr>", "<sip:127.0.0.4:5094;lr>"]


def statuses(ua: UserAgent) -> list[tuple[int, str]]:
    out = [parse(item.data) for item in ua.datagrams_to_send()]
    return [(m.code, m.phrase) for m in out if not isinstance(m, Request) and m.code > 100]  # type: ignore[union-attr]


def test_malformed_record_route_is_a_400_and_no_call() -> None:
    ua = UserAgent(host="127.0.0.1", udp_port=5060, tcp_port=5060)
    ua.receive_data(
        proxied("INVITE", branch="z9hG4bKbad", record_route="<sip:@@bad;lr>", body=SDP), PROXY, 0
    )
    assert statuses(ua) == [(400, "Malformed Record-Route URI")]
    assert drain(ua) == [] and ua.calls == {}


def test_route_naming_the_bridge_is_consumed_and_a_route_back_to_it_is_a_loop() -> None:
    ua = UserAgent(host="127.0.0.1", udp_port=5060, tcp_port=5060)
    ua.receive_data(
        proxied("INVITE", branch="z9hG4bKown", route="<sip:127.0.0.1:5060;lr>", body=SDP),
        PROXY,
        0.0,
    )
    (incoming,) = drain(ua)
    assert isinstance(incoming, IncomingCall)
    assert incoming.call.invite.headers.getlist("Route") == []
    ua.datagrams_to_send()
    loop = "<sip:127.0.0.1:5060;lr>, <sip:127.0.0.5;lr>, <sip:127.0.0.1:5060;lr>"
    ua.receive_data(
        proxied("INVITE", branch="z9hG4bKloop", route=loop, body=SDP, call_id="c2"), PROXY, 0.0
    )
    assert statuses(ua) == [(482, "Loop Detected: the Route comes back to the bridge")]
    assert drain(ua) == [] and len(ua.calls) == 1  # the first call is untouched
