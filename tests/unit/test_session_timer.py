"""RFC 4028 session timers and RFC 3311 UPDATE through the UA core: bytes in, a fake clock,
exact messages out."""

from __future__ import annotations

from sipmessage import URI

from bridge.sip.transaction import Peer
from bridge.sip.useragent import CallAnswered, CallEnded, ReInvite, UserAgent
from tests.unit.ua_bytes import (
    PHONE,
    SDP,
    answered,
    drain,
    finals,
    reply,
    request,
    requests,
    sent,
    session_deadline,
)

ASK_UAS = ("Supported: timer", "Session-Expires: 90;refresher=uas", "Allow: INVITE, ACK, UPDATE")


def test_uas_refresher_answers_with_session_expires_and_refreshes_by_update() -> None:
    ua, ok = answered(*ASK_UAS)
    assert ok.headers["Session-Expires"] == "90;refresher=uas"
    assert ok.headers["Require"] == "timer" and ok.headers["Supported"] == "timer"
    assert "UPDATE" in ok.headers["Allow"]
    assert session_deadline(ua) == 45.0  # half the interval
    ua.handle_timer(44.9)
    assert requests(sent(ua)) == []
    ua.handle_timer(45.0)
    (update,) = requests(sent(ua))
    assert update.method == "UPDATE" and update.body == b""
    assert update.headers["Session-Expires"] == "90;refresher=uac"
    assert update.cseq.sequence == 1 and str(update.uri) == "sip:alice@127.0.0.1:5070"
    ua.receive_data(reply(update, 200, "Session-Expires: 90;refresher=uac"), PHONE, 45.1)
    assert abs(session_deadline(ua) - 90.1) < 1e-9
    assert drain(ua) == []


def test_uas_refresher_without_update_in_allow_refreshes_by_reinvite_and_acks() -> None:
    ua, _ok = answered("Supported: timer", "Session-Expires: 120;refresher=uas")
    ua.handle_timer(60.0)
    (invite,) = requests(sent(ua))
    assert invite.method == "INVITE" and invite.body == SDP  # our SDP again: no media change
    assert invite.headers["Session-Expires"] == "120;refresher=uac"
    moved = "Contact: <sip:alice@127.0.0.1:5072>"  # the 2xx refreshes the remote target
    ok = reply(invite, 200, "Session-Expires: 120;refresher=uac", moved, body=SDP)
    ua.receive_data(ok, PHONE, 60.1)
    (ack,) = requests(sent(ua))
    assert ack.method == "ACK" and ack.cseq.sequence == invite.cseq.sequence
    assert str(ack.uri) == "sip:alice@127.0.0.1:5072"
    assert drain(ua) == []
    assert abs(session_deadline(ua) - 120.1) < 1e-9


def test_peer_refresher_that_stops_refreshing_gets_bye_at_expiry() -> None:
    ua, ok = answered("Supported: timer", "Session-Expires: 90;refresher=uac", "Min-SE: 90")
    assert ok.headers["Session-Expires"] == "90;refresher=uac"
    tag = ok.to_address.parameters["tag"]
    # the phone refreshes once with UPDATE at 40 s: answered 200 with the timer, no event
    ua.receive_data(
        request(
            "UPDATE",
            branch="z9hG4bKu1",
            to_tag=tag,
            cseq=2,
            headers=("Supported: timer", "Session-Expires: 90;refresher=uac"),
        ),
        PHONE,
        40.0,
    )
    (ok_update,) = finals(sent(ua))
    assert ok_update.code == 200 and ok_update.headers["Session-Expires"] == "90;refresher=uac"
    assert drain(ua) == []
    ua.handle_timer(99.9)  # 40 + 90 - min(32, 90/3) = 100
    assert requests(sent(ua)) == [] and drain(ua) == []
    ua.handle_timer(100.0)
    (bye,) = requests(sent(ua))
    assert bye.method == "BYE"
    (ended,) = drain(ua)
    assert isinstance(ended, CallEnded) and ended.reason == "session_expired"
    assert ua.calls == {}


def test_interval_below_min_se_gets_422_with_min_se_and_no_call() -> None:
    ua = UserAgent(host="127.0.0.1", udp_port=5060, tcp_port=5060)
    ua.receive_data(
        request("INVITE", branch="z9hG4bKs", headers=("Session-Expires: 60",), body=SDP), PHONE, 0
    )
    (answer,) = finals(sent(ua))
    assert (answer.code, answer.headers["Min-SE"]) == (422, "90")
    assert drain(ua) == [] and ua.calls == {}
    ua.receive_data(
        request(
            "INVITE",
            branch="z9hG4bKbad",
            call_id="st-2",
            headers=("Session-Expires: soon",),
            body=SDP,
        ),
        PHONE,
        0,
    )
    (bad,) = finals(sent(ua))
    assert (bad.code, bad.phrase) == (400, "Malformed Session-Expires")


def test_caller_without_timer_support_leaves_the_refreshing_to_the_bridge() -> None:
    # a proxy inserted Session-Expires; the phone knows nothing of timers: no Require
    _ua, ok = answered("Session-Expires: 1800")
    assert ok.headers["Session-Expires"] == "1800;refresher=uas"
    assert ok.headers.get("Require") is None


def test_require_timer_is_accepted_and_no_timer_without_session_expires() -> None:
    _ua, ok = answered("Require: timer", "Supported: timer", "Session-Expires: 300")
    assert ok.code == 200 and ok.headers["Session-Expires"] == "300;refresher=uac"
    ua, plain = answered()
    assert plain.headers.get("Session-Expires") is None and ua.get_timer() is not None
    ua.handle_timer(1000.0)  # transaction timers only: nothing is refreshed or ended
    assert requests(sent(ua)) == [] and drain(ua) == []


def test_update_with_sdp_is_an_offer_for_the_application_and_without_dialog_481() -> None:
    ua, ok = answered()
    tag = ok.to_address.parameters["tag"]
    ua.receive_data(request("UPDATE", branch="z9hG4bKu2", to_tag=tag, cseq=2, body=SDP), PHONE, 1)
    (offer,) = drain(ua)
    assert isinstance(offer, ReInvite) and offer.offer == SDP
    ua.answer_reinvite(offer.call, SDP, 1.0)
    (answer,) = finals(sent(ua))
    assert (answer.code, answer.cseq.method, answer.body) == (200, "UPDATE", SDP)
    ua.receive_data(request("UPDATE", branch="z9hG4bKu3", call_id="nodialog"), PHONE, 2)
    ua.receive_data(request("UPDATE", branch="z9hG4bKu4", to_tag="gone", cseq=5), PHONE, 2)
    assert [(r.code, r.cseq.method) for r in finals(sent(ua))] == [(481, "UPDATE")] * 2


def test_options_and_answers_say_update_and_timer_truthfully() -> None:
    ua = UserAgent(host="127.0.0.1", udp_port=5060, tcp_port=5060)
    ua.receive_data(request("OPTIONS", branch="z9hG4bKo"), PHONE, 0)
    (options,) = finals(sent(ua))
    assert "UPDATE" in options.headers["Allow"] and options.headers["Supported"] == "timer"


def test_caller_side_asks_for_a_timer_retries_after_422_and_refreshes() -> None:
    ua = UserAgent(host="127.0.0.1", udp_port=5060, tcp_port=5060)
    callee = Peer("127.0.0.3", 5080, "udp")
    ua.invite(
        target=URI.parse("sip:bob@127.0.0.3:5080"),
        peer=callee,
        room="room1",
        caller="room1",
        sdp=SDP,
        now=0.0,
    )
    (invite,) = requests(sent(ua))
    assert invite.headers["Session-Expires"] == "1800" and invite.headers["Min-SE"] == "90"
    assert invite.headers["Supported"] == "timer"
    ua.receive_data(reply(invite, 422, "Min-SE: 3600"), callee, 0.1)
    retried = [m for m in requests(sent(ua)) if m.method == "INVITE"]
    assert len(retried) == 1
    again = retried[0]
    assert again.cseq.sequence == 2 and again.headers["Session-Expires"] == "3600"
    assert again.headers.getlist("Min-SE") == ["3600"]
    to = "To: <sip:bob@127.0.0.3:5080>;tag=bob1"
    ok = reply(
        again,
        200,
        "Contact: <sip:bob@127.0.0.3:5080>",
        "Allow: INVITE, UPDATE",
        "Session-Expires: 3600;refresher=uac",
        body=SDP,
    )
    ok = ok.replace(f"To: {again.headers['To']}".encode(), to.encode())
    ua.receive_data(ok, callee, 0.2)
    assert any(isinstance(e, CallAnswered) for e in drain(ua))
    sent(ua)
    ua.handle_timer(1800.2)
    (update,) = requests(sent(ua))
    assert update.method == "UPDATE" and update.headers["Session-Expires"] == "3600;refresher=uac"
