"""Trunk registration through the UA core: REGISTER, digest, refresh before expiry, retry after
a failure, removal; bytes in, a fake clock."""

from __future__ import annotations

from sipmessage import URI, Address

from bridge.sip.auth import Credentials, verify
from bridge.sip.registration import RegistrationConfig, RegistrationState
from bridge.sip.transaction import Peer
from bridge.sip.useragent import RegistrationChanged, UserAgent
from tests.unit.ua_bytes import drain, reply, requests, sent

TRUNK = Peer("127.0.0.5", 5090, "udp")
CONTACT = Address(uri=URI.parse("sip:bridge@127.0.0.1:5060"))
CHALLENGE = 'WWW-Authenticate: Digest realm="trunk.test", nonce="abc123", qop="auth"'


def registered_ua() -> UserAgent:
    ua = UserAgent(host="127.0.0.1", udp_port=5060, tcp_port=5060)
    config = RegistrationConfig(
        TRUNK, URI.parse("sip:bridge@trunk.test"), CONTACT, Credentials("bridge", "pw"), 600
    )
    ua.register(config, 0.0)
    return ua


def test_register_answers_the_challenge_and_refreshes_before_expiry() -> None:
    ua = registered_ua()
    (first,) = requests(sent(ua))
    assert (first.method, str(first.uri), first.headers["Expires"]) == (
        "REGISTER",
        "sip:trunk.test",
        "600",
    )
    assert first.headers["Contact"] == "<sip:bridge@127.0.0.1:5060>"
    ua.receive_data(reply(first, 401, CHALLENGE), TRUNK, 0.1)
    (second,) = requests(sent(ua))
    assert second.cseq.sequence == 2 and second.call_id == first.call_id
    assert verify(second.headers["Authorization"], "REGISTER", "pw")
    ok = reply(second, 200, "Contact: <sip:bridge@127.0.0.1:5060>;expires=120")
    ua.receive_data(ok, TRUNK, 0.2)
    (changed,) = drain(ua)
    assert isinstance(changed, RegistrationChanged)
    registration = changed.registration
    assert registration.state is RegistrationState.REGISTERED
    assert registration.next_at is not None and abs(registration.next_at - 60.2) < 1e-9
    ua.handle_timer(60.2)
    (refresh,) = requests(sent(ua))
    assert refresh.method == "REGISTER" and refresh.cseq.sequence == 3


def test_refused_or_unanswered_register_is_retried_later_and_removed_at_stop() -> None:
    ua = registered_ua()
    (first,) = requests(sent(ua))
    ua.receive_data(reply(first, 403), TRUNK, 0.1)
    (changed,) = drain(ua)
    registration = changed.registration  # type: ignore[attr-defined]
    assert (registration.state, registration.status) == (RegistrationState.FAILED, 403)
    assert registration.next_at == 30.1
    ua.handle_timer(30.1)
    (again,) = requests(sent(ua))
    ua.handle_timer(30.1 + 32.0)  # Timer F: the registrar never answered
    (timeout,) = drain(ua)
    assert timeout.registration.status == 408  # type: ignore[attr-defined]
    ua.handle_timer(100.0)
    (third,) = [r for r in requests(sent(ua)) if r.cseq.sequence == 3]
    ua.receive_data(reply(third, 200, "Expires: 300"), TRUNK, 100.1)
    drain(ua)
    assert registration.state is RegistrationState.REGISTERED
    ua.unregister(registration, 101.0)
    (removal,) = requests(sent(ua))
    assert removal.headers["Expires"] == "0" and ua.registrations == []
    assert again.cseq.sequence == 2
