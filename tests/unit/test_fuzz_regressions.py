"""Every crash the fuzzers (scripts/fuzz.py) found, kept as a test: the input that crashed,
fed to the same code, now answered or dropped as the protocol says."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.sip.message import parse_message
from bridge.sip.transaction import Peer
from bridge.sip.useragent import UserAgent

FOUND = Path(__file__).resolve().parents[1] / "data" / "fuzz"
PEER = Peer("127.0.0.1", 5070, "udp")


def agent() -> UserAgent:
    return UserAgent(host="127.0.0.1", udp_port=5060, tcp_port=5060)


def test_a_2xx_whose_to_has_another_uri_scheme_is_dropped() -> None:
    """sip, found in 10 minutes: a stray 200 with `To: sfromip:...` raised ValueError in the
    user agent's 2xx-retransmission path (sipmessage cannot parse that URI)."""
    ua = agent()
    ua.receive_data((FOUND / "sip-2xx-to-unknown-scheme.bin").read_bytes(), PEER, 0.0)
    assert ua.next_event() is None and ua.datagrams_to_send() == []


@pytest.mark.parametrize("method", ["BYE", "INFO", "INVITE", "OPTIONS"])
@pytest.mark.parametrize("to", ["<tel:+15551234>;tag=abc", "<urn:x:y>;tag=abc"])
def test_in_dialog_requests_whose_to_has_another_uri_scheme_are_answered(
    method: str, to: str
) -> None:
    """Found by hand from the same crash: a request with a tagged `To` of another scheme (valid
    SIP, RFC 4475 3.3.4) raised instead of being answered: 481 for the unknown dialog (OPTIONS
    is answered 200 in or out of a dialog; an INVITE may be refused for its To)."""
    ua = agent()
    request = (
        f"{method} sip:room@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{method}\r\n"
        f"From: <sip:a@127.0.0.1>;tag=1\r\nTo: {to}\r\nCall-ID: c-{method}\r\n"
        f"CSeq: 1 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    ua.receive_data(request.encode(), PEER, 0.0)
    answers = [parse_message(out.data) for out in ua.datagrams_to_send()]
    expected = {"BYE": {481}, "INFO": {481}, "OPTIONS": {200}, "INVITE": {481, 400, 416}}
    assert answers and answers[-1].code in expected[method]  # type: ignore[union-attr]
