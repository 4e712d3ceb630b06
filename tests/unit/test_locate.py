"""RFC 3263/2782 target order and the UA's failover to the next target (503, no answer)."""

from __future__ import annotations

import random

from sipmessage import URI, Message

from bridge.sip.transaction import Peer
from bridge.sip.useragent import CallFailed, UserAgent
from control.locate import SrvRecord, order_srv
from tests.unit.ua_bytes import SDP, drain, reply


def test_srv_order_is_by_priority_then_weighted_and_skips_the_root_target() -> None:
    records = [
        SrvRecord(20, 0, 5062, "c.example"),
        SrvRecord(10, 1, 5060, "a.example"),
        SrvRecord(10, 3, 5061, "b.example"),
        SrvRecord(5, 0, 5060, "."),  # "no service here"
    ]
    orders = [[r.target for r in order_srv(records, random.Random(s))] for s in range(400)]
    assert all(order[2] == "c.example" and len(order) == 3 for order in orders)
    b_first = sum(order[0] == "b.example" for order in orders)
    assert 240 < b_first < 360  # weight 3 against 1: about three times in four


def test_invite_goes_to_the_next_target_on_503_and_on_no_answer() -> None:
    ua = UserAgent(host="127.0.0.1", udp_port=5060, tcp_port=5060)
    first, second, third = (Peer("127.0.0.1", port, "udp") for port in (5071, 5072, 5073))
    target = URI.parse("sip:+15551234567@trunk.test")
    ua.invite(
        target=target,
        peer=first,
        room="r",
        caller="r",
        sdp=SDP,
        now=0.0,
        alternatives=(second, third),
    )
    (out,) = ua.datagrams_to_send()
    assert out.peer == first
    invite = Message.parse(out.data)
    ua.receive_data(reply(invite, 503), first, 0.1)  # type: ignore[arg-type]
    retried = [o for o in ua.datagrams_to_send() if o.peer == second]
    assert len(retried) == 1 and b"CSeq: 2 INVITE" in retried[0].data
    ua.handle_timer(0.1 + 32.0)  # Timer B at the second target: on to the third
    assert any(o.peer == third and b"CSeq: 3 INVITE" in o.data for o in ua.datagrams_to_send())
    ua.handle_timer(0.1 + 64.5)  # no target left: the call fails
    (failed,) = [e for e in drain(ua) if isinstance(e, CallFailed)]
    assert failed.status == 408
