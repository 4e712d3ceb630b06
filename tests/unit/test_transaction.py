"""The transaction layer driven with an injected clock: exact timer values, no sockets."""

from __future__ import annotations

from sipmessage import URI, Request, Response

from bridge.sip.message import encode, make_response, parse_message
from bridge.sip.timers import TimerConfig
from bridge.sip.transaction import (
    AckReceived,
    AckTimeout,
    Outgoing,
    Peer,
    RequestReceived,
    ResponseReceived,
    TransactionEvent,
    TransactionLayer,
    TransactionTimeout,
)

ALICE = Peer("192.0.2.1", 5062, "udp")
ALICE_TCP = Peer("192.0.2.1", 40000, "tcp")
T1, T2 = 0.5, 4.0
RETRANSMITS_CAPPED = [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]  # G, E, 2xx
RETRANSMITS_DOUBLING = [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]  # Timer A


def request(
    method: str = "INVITE",
    *,
    branch: str = "z9hG4bKabc",
    via: str = "SIP/2.0/UDP 192.0.2.1:5062",
    cseq: int = 1,
    to_tag: str = "",
    call_id: str = "call-1",
) -> Request:
    to = "<sip:room@bridge.example.com>" + (f";tag={to_tag}" if to_tag else "")
    data = (
        f"{method} sip:room@bridge.example.com SIP/2.0\r\n"
        f"Via: {via};branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:alice@example.com>;tag=a1\r\n"
        f"To: {to}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Contact: <sip:alice@192.0.2.1:5062>\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


def response_to(sent: bytes, code: int, to_tag: str = "b1") -> Response:
    original = parse_message(sent)
    assert isinstance(original, Request)
    response = parse_message(encode(make_response(original, code, to_tag=to_tag)))
    assert isinstance(response, Response)
    return response


def events(layer: TransactionLayer) -> list[TransactionEvent]:
    out = []
    while (event := layer.next_event()) is not None:
        out.append(event)
    return out


def first_lines(outgoing: list[Outgoing]) -> list[str]:
    return [item.data.split(b"\r\n", 1)[0].decode() for item in outgoing]


def run_timers(layer: TransactionLayer, until: float) -> list[tuple[float, list[Outgoing]]]:
    """Fire every deadline up to ``until``; record when each fired and what it sent."""
    fired = []
    while (deadline := layer.get_timer()) is not None and deadline <= until:
        layer.handle_timer(deadline)
        fired.append((deadline, layer.datagrams_to_send()))
    return fired


def start_invite(layer: TransactionLayer, now: float = 0.0) -> str:
    layer.receive(request(), ALICE, now)
    [event] = events(layer)
    assert isinstance(event, RequestReceived)
    layer.datagrams_to_send()
    return event.txn_id


# -- server transactions ---------------------------------------------------------


def test_new_invite_gets_100_trying_with_rport_and_received() -> None:
    layer = TransactionLayer()
    invite = request(via="SIP/2.0/UDP client.example.com:5062;rport")
    layer.receive(invite, Peer("192.0.2.1", 6000, "udp"), 0.0)
    [trying] = layer.datagrams_to_send()
    assert trying.peer == Peer("192.0.2.1", 6000, "udp")
    assert trying.data.startswith(b"SIP/2.0 100 Trying\r\n")
    assert (
        b"Via: SIP/2.0/UDP client.example.com:5062;rport=6000;branch=z9hG4bKabc"
        b";received=192.0.2.1\r\n" in trying.data
    )
    [event] = events(layer)
    assert isinstance(event, RequestReceived)
    assert event.request is invite
    assert layer.server_txn_state(event.txn_id) == "proceeding"


def test_received_without_rport_answers_the_source_ip_at_the_via_port() -> None:
    layer = TransactionLayer()
    layer.receive(
        request(via="SIP/2.0/UDP client.example.com:5070"), Peer("192.0.2.9", 6000, "udp"), 0
    )
    [trying] = layer.datagrams_to_send()
    assert trying.peer == Peer("192.0.2.9", 5070, "udp")
    assert b"client.example.com:5070;branch=z9hG4bKabc;received=192.0.2.9\r\n" in trying.data


def test_same_host_answers_the_via_sent_by() -> None:
    layer = TransactionLayer()
    layer.receive(request(via="SIP/2.0/UDP 192.0.2.1"), Peer("192.0.2.1", 6000, "udp"), 0)
    [trying] = layer.datagrams_to_send()
    assert trying.peer == Peer("192.0.2.1", 5060, "udp")
    assert b"received" not in trying.data


def test_via_with_out_of_range_port_is_dropped_without_exception() -> None:
    layer = TransactionLayer()
    bad = Request("INVITE", URI.parse("sip:room@bridge.example.com"))
    for name, value in [
        ("Via", "SIP/2.0/UDP 192.0.2.1:99999;branch=z9hG4bKx"),
        ("From", "<sip:a@example.com>;tag=1"),
        ("To", "<sip:room@bridge.example.com>"),
        ("Call-ID", "c"),
        ("CSeq", "1 INVITE"),
    ]:
        bad.headers.add(name, value)
    layer.receive(bad, ALICE, 0.0)
    bad.headers.set("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKx;rport=0")
    layer.receive(bad, ALICE, 0.0)
    bad.headers.set("Via", "garbage")
    layer.receive(bad, ALICE, 0.0)
    assert layer.datagrams_to_send() == []
    assert events(layer) == []
    assert len(layer) == 0


def test_invite_server_retransmits_486_on_timer_g_and_gives_up_on_timer_h() -> None:
    layer = TransactionLayer()
    txn = start_invite(layer)
    layer.send_response(txn, make_response(request(), 486, to_tag="b1"), 0.0)
    [busy] = layer.datagrams_to_send()
    assert busy.data.startswith(b"SIP/2.0 486 Busy Here\r\n")
    fired = run_timers(layer, 100.0)
    assert [when for when, _ in fired] == [*RETRANSMITS_CAPPED, 32.0]
    assert all(sent == [busy] for _, sent in fired[:-1])
    assert fired[-1][1] == []
    assert events(layer) == [TransactionTimeout(txn, "INVITE", server=True)]
    assert len(layer) == 0
    assert layer.get_timer() is None


def test_ack_stops_timer_g_and_timer_i_ends_the_transaction() -> None:
    layer = TransactionLayer()
    txn = start_invite(layer)
    layer.send_response(txn, make_response(request(), 486, to_tag="b1"), 0.0)
    layer.datagrams_to_send()
    assert [when for when, _ in run_timers(layer, 1.0)] == [0.5]
    layer.receive(request("ACK", to_tag="b1"), ALICE, 1.0)
    assert layer.server_txn_state(txn) == "confirmed"
    assert layer.get_timer() == 6.0  # Timer I = T4
    layer.receive(request("ACK", to_tag="b1"), ALICE, 2.0)  # retransmitted ACK absorbed
    assert run_timers(layer, 100.0) == [(6.0, [])]
    assert events(layer) == []
    assert layer.server_txn_state(txn) is None


def test_retransmitted_invite_resends_the_last_response_without_event() -> None:
    layer = TransactionLayer()
    txn = start_invite(layer)
    layer.receive(request(), ALICE, 0.2)
    assert first_lines(layer.datagrams_to_send()) == ["SIP/2.0 100 Trying"]
    layer.send_response(txn, make_response(request(), 180, to_tag="b1"), 0.3)
    layer.datagrams_to_send()
    layer.receive(request(), ALICE, 0.4)
    assert first_lines(layer.datagrams_to_send()) == ["SIP/2.0 180 Ringing"]
    assert events(layer) == []


def test_2xx_is_retransmitted_until_the_ack() -> None:
    layer = TransactionLayer()
    txn = start_invite(layer)
    layer.send_response(txn, make_response(request(), 200, to_tag="b1"), 0.0)
    [ok] = layer.datagrams_to_send()
    assert layer.server_txn_state(txn) == "accepted"
    fired = run_timers(layer, 8.0)
    assert [when for when, _ in fired] == [0.5, 1.5, 3.5, 7.5]
    assert all(sent == [ok] for _, sent in fired)
    ack = request("ACK", branch="z9hG4bKack", to_tag="b1")
    layer.receive(ack, ALICE, 8.0)
    assert events(layer) == [AckReceived(ack, ALICE)]
    layer.receive(request(), ALICE, 9.0)  # retransmitted INVITE in Accepted: 2xx again
    assert layer.datagrams_to_send() == [ok]
    assert run_timers(layer, 100.0) == [(32.0, [])]  # Timer L, quietly
    assert events(layer) == []
    assert len(layer) == 0


def test_2xx_without_ack_ends_in_ack_timeout() -> None:
    layer = TransactionLayer()
    txn = start_invite(layer)
    layer.send_response(txn, make_response(request(), 200, to_tag="b1"), 0.0)
    fired = run_timers(layer, 100.0)
    assert [when for when, _ in fired] == [*RETRANSMITS_CAPPED, 32.0]
    assert events(layer) == [AckTimeout(txn, "call-1")]


def test_retransmitted_bye_is_absorbed_with_the_last_response() -> None:
    layer = TransactionLayer()
    bye = request("BYE", branch="z9hG4bKbye", cseq=2, to_tag="b1")
    layer.receive(bye, ALICE, 0.0)
    [event] = events(layer)
    assert isinstance(event, RequestReceived)
    layer.receive(bye, ALICE, 0.1)  # before the answer: nothing to re-send
    assert layer.datagrams_to_send() == []
    layer.send_response(event.txn_id, make_response(bye, 200), 0.2)
    [ok] = layer.datagrams_to_send()
    layer.receive(bye, ALICE, 1.0)
    assert layer.datagrams_to_send() == [ok]
    assert events(layer) == []
    assert run_timers(layer, 100.0) == [(32.2, [])]  # Timer J = 64*T1
    assert len(layer) == 0


def test_cancel_flow_driven_as_the_tu() -> None:
    layer = TransactionLayer()
    invite_txn = start_invite(layer)
    layer.send_response(invite_txn, make_response(request(), 180, to_tag="b1"), 0.1)
    layer.datagrams_to_send()
    cancel = request("CANCEL")  # same branch as the INVITE, as RFC 3261 §9.1 requires
    layer.receive(cancel, ALICE, 1.0)
    [event] = events(layer)
    assert isinstance(event, RequestReceived)
    assert event.txn_id != invite_txn
    # The TU: find the INVITE, answer the CANCEL 200 and, as no final was sent yet, 487.
    assert layer.find_invite_server_txn(cancel) == invite_txn
    assert not layer.final_response_sent(invite_txn)
    layer.send_response(event.txn_id, make_response(cancel, 200, to_tag="b1"), 1.0)
    layer.send_response(invite_txn, make_response(request(), 487, to_tag="b1"), 1.0)
    assert first_lines(layer.datagrams_to_send()) == [
        "SIP/2.0 200 OK",
        "SIP/2.0 487 Request Terminated",
    ]
    assert layer.final_response_sent(invite_txn)
    layer.receive(request("ACK", to_tag="b1"), ALICE, 1.2)
    assert layer.server_txn_state(invite_txn) == "confirmed"
    assert events(layer) == []


def test_cancel_for_an_unknown_invite_finds_nothing() -> None:
    layer = TransactionLayer()
    assert layer.find_invite_server_txn(request("CANCEL", branch="z9hG4bKnone")) is None


def test_rfc2543_branchless_requests_are_matched_by_their_fields() -> None:
    layer = TransactionLayer()
    old = request(branch="old-style")
    layer.receive(old, ALICE, 0.0)
    [event] = events(layer)
    layer.datagrams_to_send()
    layer.receive(request(branch="old-style"), ALICE, 0.5)
    assert first_lines(layer.datagrams_to_send()) == ["SIP/2.0 100 Trying"]
    assert events(layer) == []
    assert layer.find_invite_server_txn(request("CANCEL", branch="old-style")) == event.txn_id


def test_merged_request_gets_482() -> None:
    layer = TransactionLayer()
    start_invite(layer)
    layer.receive(request(branch="z9hG4bKother"), ALICE, 0.1)
    assert first_lines(layer.datagrams_to_send()) == ["SIP/2.0 482 Loop Detected"]
    assert events(layer) == []


def test_tcp_server_never_retransmits() -> None:
    layer = TransactionLayer()
    layer.receive(request(via="SIP/2.0/TCP 192.0.2.1:5062"), ALICE_TCP, 0.0)
    [event] = events(layer)
    assert isinstance(event, RequestReceived)
    assert [o.peer for o in layer.datagrams_to_send()] == [ALICE_TCP]
    layer.send_response(event.txn_id, make_response(event.request, 486, to_tag="b1"), 0.0)
    layer.datagrams_to_send()
    assert layer.get_timer() == 32.0  # only Timer H
    layer.receive(request("ACK", via="SIP/2.0/TCP 192.0.2.1:5062", to_tag="b1"), ALICE_TCP, 1.0)
    assert len(layer) == 0  # Timer I is zero on TCP


# -- client transactions ---------------------------------------------------------


def outgoing_request(method: str, branch: str = "z9hG4bKcli") -> Request:
    sent = request(method, branch=branch, via="SIP/2.0/UDP 192.0.2.100:5060", call_id="out-1")
    return sent


def test_non_invite_client_retransmits_on_timer_e_and_times_out_on_timer_f() -> None:
    layer = TransactionLayer()
    txn = layer.send_request(outgoing_request("OPTIONS"), ALICE, 0.0)
    [first] = layer.datagrams_to_send()
    assert first.peer == ALICE
    fired = run_timers(layer, 100.0)
    assert [when for when, _ in fired] == [*RETRANSMITS_CAPPED, 32.0]
    assert all(sent == [first] for _, sent in fired[:-1])
    assert events(layer) == [TransactionTimeout(txn, "OPTIONS", server=False)]
    assert len(layer) == 0


def test_non_invite_client_uses_t2_after_a_provisional_and_ends_on_timer_k() -> None:
    layer = TransactionLayer()
    txn = layer.send_request(outgoing_request("BYE"), ALICE, 0.0)
    [sent] = layer.datagrams_to_send()
    layer.receive(response_to(sent.data, 100), ALICE, 0.2)
    assert [when for when, _ in run_timers(layer, 5.0)] == [0.5, 4.5]
    final = response_to(sent.data, 200)
    layer.receive(final, ALICE, 5.0)
    layer.receive(final, ALICE, 5.1)  # retransmission absorbed
    assert [type(e) for e in events(layer)] == [ResponseReceived, ResponseReceived]
    assert run_timers(layer, 100.0) == [(10.0, [])]  # Timer K = T4
    assert layer.server_txn_state(txn) is None and len(layer) == 0


def test_invite_client_retransmits_on_timer_a_and_times_out_on_timer_b() -> None:
    layer = TransactionLayer()
    txn = layer.send_request(outgoing_request("INVITE"), ALICE, 0.0)
    [first] = layer.datagrams_to_send()
    fired = run_timers(layer, 100.0)
    assert [when for when, _ in fired] == [*RETRANSMITS_DOUBLING, 32.0]
    assert all(sent == [first] for _, sent in fired[:-1])
    assert events(layer) == [TransactionTimeout(txn, "INVITE", server=False)]


def test_invite_client_acks_a_486_itself() -> None:
    layer = TransactionLayer()
    txn = layer.send_request(outgoing_request("INVITE"), ALICE, 0.0)
    [sent] = layer.datagrams_to_send()
    layer.receive(response_to(sent.data, 180), ALICE, 0.2)
    assert layer.get_timer() is None  # Proceeding: no Timer A, no Timer B
    busy = response_to(sent.data, 486)
    layer.receive(busy, ALICE, 1.0)
    [ack] = layer.datagrams_to_send()
    assert ack.peer == ALICE
    assert ack.data == (
        b"ACK sip:room@bridge.example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.100:5060;branch=z9hG4bKcli\r\n"
        b"Max-Forwards: 70\r\n"
        b"From: <sip:alice@example.com>;tag=a1\r\n"
        b"To: <sip:room@bridge.example.com>;tag=b1\r\n"
        b"Call-ID: out-1\r\n"
        b"CSeq: 1 ACK\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    layer.receive(busy, ALICE, 2.0)  # retransmitted 486: ACK again, no event
    assert layer.datagrams_to_send() == [ack]
    assert [(type(e), e.response.code) for e in events(layer)] == [  # type: ignore[attr-defined]
        (ResponseReceived, 180),
        (ResponseReceived, 486),
    ]
    assert run_timers(layer, 100.0) == [(33.0, [])]  # Timer D
    assert layer.server_txn_state(txn) is None and len(layer) == 0


def test_invite_client_passes_up_2xx_and_retransmissions_then_strays() -> None:
    layer = TransactionLayer()
    txn = layer.send_request(outgoing_request("INVITE"), ALICE, 0.0)
    [sent] = layer.datagrams_to_send()
    ok = response_to(sent.data, 200)
    layer.receive(ok, ALICE, 0.1)
    layer.receive(ok, ALICE, 0.6)
    assert events(layer) == [ResponseReceived(txn, ok), ResponseReceived(txn, ok)]
    assert layer.datagrams_to_send() == []  # the ACK for a 2xx is the TU's
    assert run_timers(layer, 100.0) == [(32.1, [])]  # Timer M
    layer.receive(ok, ALICE, 40.0)
    assert events(layer) == [ResponseReceived(None, ok)]


def test_tcp_client_never_retransmits() -> None:
    layer = TransactionLayer()
    txn = layer.send_request(outgoing_request("OPTIONS"), ALICE_TCP, 0.0)
    layer.datagrams_to_send()
    assert run_timers(layer, 100.0) == [(32.0, [])]
    assert events(layer) == [TransactionTimeout(txn, "OPTIONS", server=False)]


def test_timer_config_scales_everything() -> None:
    timers = TimerConfig(t1=1.0, t2=8.0, t4=10.0)
    assert (timers.timer_a, timers.timer_b, timers.timer_f, timers.timer_h) == (
        1.0,
        64.0,
        64.0,
        64.0,
    )
    assert (timers.timer_d(False), timers.timer_d(True)) == (64.0, 0.0)
    assert (timers.timer_i(False), timers.timer_j(False), timers.timer_k(True)) == (10.0, 64.0, 0.0)
    assert timers.timer_l == 64.0
    layer = TransactionLayer(timers)
    layer.send_request(outgoing_request("OPTIONS"), ALICE, 0.0)
    assert layer.get_timer() == 1.0
