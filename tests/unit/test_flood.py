"""The per-source limit on new SIP dialogs (`bridge.sip.flood`), fed raw bytes and a clock."""

from __future__ import annotations

import itertools

import pytest

from bridge.sip import flood
from bridge.sip.flood import FloodGuard, FloodRules
from bridge.sip.message import parse_message

RULES = FloodRules(rate=2.0, burst=3, allow=("10.9.0.0/16",))
_n = itertools.count()


def request(
    method: str = "INVITE", *, to_tag: str = "", branch: str = "", compact: bool = False
) -> bytes:
    branch = branch or f"z9hG4bK{next(_n)}"
    names = ("v", "f", "t", "i") if compact else ("Via", "From", "To", "Call-ID")
    tag = f";tag={to_tag}" if to_tag else ""
    lines = [
        f"{method} sip:room@10.0.0.1 SIP/2.0",
        f"{names[0]}: SIP/2.0/UDP 10.1.1.1:5060;branch={branch}",
        "Max-Forwards: 70",
        f"{names[1]}: <sip:a@10.1.1.1>;tag=abc",
        f"{names[2]}: <sip:room@10.0.0.1>{tag}",
        f"{names[3]}: call-{branch}",
        f"CSeq: 1 {method}",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_a_burst_passes_then_the_excess_gets_a_stateless_503_with_retry_after() -> None:
    guard = FloodGuard(RULES)
    assert [guard.check(request(), "10.1.1.1", 0.0) for _ in range(3)] == [None] * 3
    invite = request(branch="z9hG4bKlate")
    answer = guard.check(invite, "10.1.1.1", 0.0)
    assert answer
    response = parse_message(answer)
    assert response.code == 503  # type: ignore[union-attr]
    assert response.headers.get("Retry-After") == "5"
    assert response.via[0].parameters["branch"] == "z9hG4bKlate"  # type: ignore[union-attr]
    assert response.call_id == "call-z9hG4bKlate"
    assert response.to_address.parameters.get("tag")  # a final response gets a To tag
    assert str(response.cseq) == "1 INVITE"
    assert guard.check(request(), "10.1.1.2", 0.0) is None  # another source has its own bucket
    assert (guard.counters.limited, guard.counters.sources_limited) == (1, 1)


def test_tokens_come_back_at_the_rate() -> None:
    guard = FloodGuard(RULES)
    for _ in range(3):
        guard.check(request("OPTIONS"), "10.1.1.1", 0.0)
    assert guard.check(request("REGISTER"), "10.1.1.1", 0.2)  # 0.4 of a token: refused
    assert guard.check(request("REGISTER"), "10.1.1.1", 0.5) is None  # a token back
    assert guard.check(request("REGISTER"), "10.1.1.1", 0.5)


def test_dialogs_acks_cancels_responses_and_retransmissions_are_never_limited() -> None:
    guard = FloodGuard(RULES)
    first = request(branch="z9hG4bKfirst")
    assert guard.check(first, "10.1.1.1", 0.0) is None
    for _ in range(2):
        guard.check(request(), "10.1.1.1", 0.0)
    assert guard.check(request(), "10.1.1.1", 0.0)  # empty now
    assert guard.check(first, "10.1.1.1", 0.0) is None  # its retransmission
    assert guard.check(request("INVITE", to_tag="x"), "10.1.1.1", 0.0) is None  # re-INVITE
    for method in ("ACK", "CANCEL", "BYE", "INFO"):
        assert guard.check(request(method), "10.1.1.1", 0.0) is None
    refusal = parse_message(guard.check(request(), "10.1.1.1", 0.0) or b"")
    tag = refusal.to_address.parameters["tag"]
    assert guard.check(request("ACK", to_tag=tag), "10.1.1.1", 0.0) == b""  # our 503's ACK
    assert guard.check(b"SIP/2.0 200 OK\r\nCSeq: 1 INVITE\r\n\r\n", "10.1.1.1", 0.0) is None


def test_the_allow_list_and_compact_headers() -> None:
    guard = FloodGuard(RULES)
    assert all(guard.check(request(), "10.9.3.4", 0.0) is None for _ in range(20))
    for _ in range(3):
        guard.check(request(compact=True), "10.1.1.1", 0.0)
    assert guard.check(request("INVITE", to_tag="x", compact=True), "10.1.1.1", 0.0) is None
    refusal = guard.check(request(compact=True), "10.1.1.1", 0.0)
    assert refusal and parse_message(refusal).code == 503  # type: ignore[union-attr]


def test_drop_broken_requests_and_no_limit() -> None:
    dropping = FloodGuard(FloodRules(rate=1.0, burst=1, action="drop", allow=()))
    assert dropping.check(request(), "10.1.1.1", 0.0) is None
    assert dropping.check(request(), "10.1.1.1", 0.0) == b""
    answering = FloodGuard(FloodRules(rate=1.0, burst=1, allow=()))
    answering.check(request(), "10.1.1.1", 0.0)
    assert answering.check(b"INVITE sip:x SIP/2.0\r\nTo: <sip:x@y>\r\n\r\n", "10.1.1.1", 0.0) == b""
    assert answering.check(b"INVITE", "10.1.1.1", 0.0) is None  # not a request: the parser says
    off = FloodGuard(FloodRules(rate=0, allow=()))
    assert all(off.check(request(), "10.1.1.1", 0.0) is None for _ in range(100))


def test_memory_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(flood, "MAX_SOURCES", 50)
    monkeypatch.setattr(flood, "MAX_ADMITTED", 50)
    guard = FloodGuard(RULES)
    for n in range(500):
        guard.check(request(), f"10.2.{n // 200}.{n % 200}", 0.0)
    assert len(guard._buckets) <= 50 and len(guard._admitted) <= 50
    assert len(guard._allowed) <= 50
