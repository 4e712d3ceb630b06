"""NAT: in-dialog requests to a phone behind NAT go to its source address, not its private
Contact; OPTIONS keep-alives in established dialogs, a 481 answer ending the call."""

from __future__ import annotations

from sipmessage import Message

from bridge.sip.transaction import Peer
from bridge.sip.useragent import CallEnded, IncomingCall, UserAgent
from tests.unit.ua_bytes import PHONE, SDP, drain, reply, request, requests, sent

PUBLIC = Peer("127.0.0.8", 40000, "udp")  # where the NAT maps the phone


def test_bye_to_a_phone_behind_nat_goes_to_its_source_address() -> None:
    ua = UserAgent(host="127.0.0.1", udp_port=5060, tcp_port=5060)
    invite = request("INVITE", branch="z9hG4bKnat", body=SDP)
    invite = invite.replace(
        b"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKnat",
        b"Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKnat;rport",
    )
    invite = invite.replace(
        b"Contact: <sip:alice@127.0.0.1:5070>", b"Contact: <sip:alice@10.0.0.2>"
    )
    ua.receive_data(invite, PUBLIC, 0.0)
    (incoming,) = drain(ua)
    assert isinstance(incoming, IncomingCall) and incoming.call.nated
    ua.answer(incoming.call, SDP, 0.0)
    out = ua.datagrams_to_send()
    assert all(o.peer == PUBLIC for o in out)  # rport: responses to the source
    ok = Message.parse(out[-1].data)
    assert "rport=40000" in ok.headers["Via"] and "received=127.0.0.8" in ok.headers["Via"]
    ua.hangup(incoming.call, 1.0)
    (bye,) = ua.datagrams_to_send()
    assert bye.peer == PUBLIC and b"BYE sip:alice@10.0.0.2 SIP/2.0" in bye.data


def test_options_keepalive_in_the_dialog_and_481_ends_the_call_without_bye() -> None:
    ua = UserAgent(host="127.0.0.1", udp_port=5060, tcp_port=5060, keepalive_s=20.0)
    ua.receive_data(request("INVITE", branch="z9hG4bKi", body=SDP), PHONE, 0.0)
    (incoming,) = drain(ua)
    assert isinstance(incoming, IncomingCall)
    ua.answer(incoming.call, SDP, 0.0)
    ua.receive_data(request("ACK", branch="z9hG4bKa", to_tag=incoming.call.local_tag), PHONE, 0.05)
    drain(ua)
    sent(ua)
    ua.handle_timer(20.05)
    (options,) = requests(sent(ua))
    assert options.method == "OPTIONS" and options.call_id == incoming.call.invite.call_id
    ua.receive_data(reply(options, 200), PHONE, 20.1)
    assert drain(ua) == []
    ua.handle_timer(40.05)
    (again,) = requests(sent(ua))
    ua.receive_data(reply(again, 481), PHONE, 40.1)
    (ended,) = drain(ua)
    assert isinstance(ended, CallEnded) and ended.reason == "dialog_gone"
    assert requests(sent(ua)) == [] and ua.calls == {}
