"""RFC 3515 REFER through the UA core, both ways: the bridge as transferor (REFER out, NOTIFYs
in) and as transferee (REFER in, 202 and NOTIFYs out), and the bad REFERs and NOTIFYs."""

from __future__ import annotations

from sipmessage import URI

from bridge.sip.useragent import TransferRequested, TransferResult
from tests.unit.ua_bytes import PHONE, answered, drain, finals, reply, request, requests, sent

TARGET = URI.parse("sip:callee@127.0.0.9:5099")


def notify(tag: str, cseq: int, frag: str, state: str, event: str = "refer") -> bytes:
    data = request(
        "NOTIFY",
        branch=f"z9hG4bKn{cseq}",
        to_tag=tag,
        cseq=cseq,
        headers=(
            f"Event: {event}",
            f"Subscription-State: {state}",
            "Content-Type: message/sipfrag",
        ),
        body=frag.encode(),
    )
    return data.replace(b"Content-Type: application/sdp\r\n", b"")


def test_bridge_refers_the_phone_and_learns_the_outcome_from_notify() -> None:
    ua, ok = answered()
    tag = ok.to_address.parameters["tag"]
    (call,) = ua.calls.values()
    assert ua.refer(call, TARGET, 1.0)
    assert not ua.refer(call, TARGET, 1.0)  # one transfer at a time
    (refer,) = requests(sent(ua))
    assert refer.method == "REFER" and refer.headers["Refer-To"] == f"<{TARGET}>"
    assert refer.headers["Referred-By"] == "<sip:room1@127.0.0.1:5060>"
    ua.receive_data(reply(refer, 202), PHONE, 1.1)
    ua.receive_data(notify(tag, 2, "SIP/2.0 100 Trying\r\n", "active;expires=60"), PHONE, 1.2)
    assert [(r.code, r.cseq.method) for r in finals(sent(ua))] == [(200, "NOTIFY")]
    assert drain(ua) == []
    ua.receive_data(notify(tag, 3, "SIP/2.0 200 OK\r\n", "terminated;reason=noresource"), PHONE, 2)
    (result,) = drain(ua)
    assert isinstance(result, TransferResult) and (result.status, result.reason) == (200, "OK")


def test_refused_refer_and_unexpected_notifies() -> None:
    ua, ok = answered()
    tag = ok.to_address.parameters["tag"]
    (call,) = ua.calls.values()
    ua.receive_data(notify(tag, 2, "SIP/2.0 200 OK\r\n", "terminated"), PHONE, 0.5)
    ua.receive_data(notify(tag, 3, "SIP/2.0 200 OK\r\n", "active", event="presence"), PHONE, 0.5)
    answers = [(r.code, r.phrase) for r in finals(sent(ua))]
    assert answers == [(481, "No transfer in progress"), (489, "Bad Event")]
    ua.refer(call, TARGET, 1.0)
    (refer,) = requests(sent(ua))
    ua.receive_data(reply(refer, 603), PHONE, 1.1)
    (result,) = drain(ua)
    assert isinstance(result, TransferResult) and result.status == 603


def test_phone_refers_the_bridge_202_then_notifies_trying_and_the_outcome() -> None:
    ua, ok = answered()
    tag = ok.to_address.parameters["tag"]
    refer_to = ("Refer-To: <sip:other@127.0.0.1:5060>",)
    ua.receive_data(
        request("REFER", branch="z9hG4bKr", to_tag=tag, cseq=2, headers=refer_to), PHONE, 1.0
    )
    (asked,) = drain(ua)
    assert isinstance(asked, TransferRequested) and asked.to_bridge
    assert asked.target.user == "other"
    ua.accept_transfer(asked.call, 1.0)
    ua.report_transfer(asked.call, 200, 1.0)
    out = sent(ua)
    assert [(r.code, r.cseq.method) for r in finals(out)] == [(202, "REFER")]
    first, last = requests(out)
    assert (first.method, first.headers["Event"], first.body) == (
        "NOTIFY",
        "refer",
        b"SIP/2.0 100 Trying\r\n",
    )
    assert first.headers["Subscription-State"] == "active;expires=60"
    assert last.body == b"SIP/2.0 200 OK\r\n" and last.headers["Content-Type"] == "message/sipfrag"
    assert last.headers["Subscription-State"] == "terminated;reason=noresource"
    assert last.cseq.sequence == first.cseq.sequence + 1


def test_bad_refers_get_clear_errors() -> None:
    ua, ok = answered()
    tag = ok.to_address.parameters["tag"]
    bad = [
        (),
        ("Refer-To: <sip:@@nowhere>",),
        ("Refer-To: <tel:+4930123>",),
        ("Refer-To: <sip:a@127.0.0.1>", "Refer-To: <sip:b@127.0.0.1>"),
    ]
    for cseq, headers in enumerate(bad, start=2):
        ua.receive_data(
            request("REFER", branch=f"z9hG4bKb{cseq}", to_tag=tag, cseq=cseq, headers=headers),
            PHONE,
            1.0,
        )
    ua.receive_data(
        request(
            "REFER",
            branch="z9hG4bKnd",
            call_id="nodialog",
            headers=("Refer-To: <sip:a@127.0.0.1>",),
        ),
        PHONE,
        1.0,
    )
    assert [(r.code, r.phrase) for r in finals(sent(ua))] == [
        (400, "A REFER needs exactly one Refer-To"),
        (400, "Malformed Refer-To"),
        (416, "Refer-To must be a SIP URI"),
        (400, "A REFER needs exactly one Refer-To"),
        (481, "Call/Transaction Does Not Exist"),
    ]
    assert drain(ua) == [] and len(ua.calls) == 1
