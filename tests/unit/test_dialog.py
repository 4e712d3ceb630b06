"""RFC 3261 §12 dialogs built from parsed messages."""

from __future__ import annotations

import pytest
from sipmessage import Address, Request, Response, Via

from bridge.sip.dialog import Dialog, create_cancel, dialog_id_of
from bridge.sip.message import SipError, encode, make_response, parse_message

INVITE = (
    b"INVITE sip:room@bridge.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bKabc\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Alice" <sip:alice@example.com>;tag=a1\r\n'
    b"To: <sip:room@bridge.example.com>\r\n"
    b"Call-ID: call-1\r\n"
    b"CSeq: 10 INVITE\r\n"
    b"Contact: <sip:alice@192.0.2.1:5062>\r\n"
    b"Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def parse_request(data: bytes) -> Request:
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


def uas_dialog() -> Dialog:
    return Dialog.as_uas(parse_request(INVITE), "b1")


def test_uas_dialog_from_invite() -> None:
    dialog = uas_dialog()
    assert dialog.id == ("call-1", "b1", "a1")
    assert str(dialog.remote_target) == "sip:alice@192.0.2.1:5062"
    assert [str(route.uri) for route in dialog.route_set] == [
        "sip:p1.example.com;lr",
        "sip:p2.example.com;lr",
    ]
    assert (dialog.local_seq, dialog.remote_seq) == (0, 10)
    assert (
        dialog_id_of(
            parse_request(INVITE.replace(b"example.com>\r\n", b"example.com>;tag=b1\r\n", 1))
        )
        == dialog.id
    )


def test_bye_from_the_uas_side() -> None:
    dialog = uas_dialog()
    bye = dialog.create_request(
        "BYE", via=Via.parse("SIP/2.0/UDP 192.0.2.100:5060;branch=z9hG4bKbye")
    )
    assert encode(bye) == (
        b"BYE sip:alice@192.0.2.1:5062 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.100:5060;branch=z9hG4bKbye\r\n"
        b"Max-Forwards: 70\r\n"
        b"Route: <sip:p1.example.com;lr>\r\n"
        b"Route: <sip:p2.example.com;lr>\r\n"
        b"From: <sip:room@bridge.example.com>;tag=b1\r\n"
        b'To: "Alice" <sip:alice@example.com>;tag=a1\r\n'
        b"Call-ID: call-1\r\n"
        b"CSeq: 1 BYE\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    again = dialog.create_request("INFO", host="192.0.2.100", port=5060)
    assert again.cseq.sequence == 2
    assert again.via[0].parameters["branch"].startswith("z9hG4bK")
    assert "rport" in again.via[0].parameters
    with pytest.raises(ValueError):
        dialog.create_request("ACK", host="h")


def test_uac_dialog_reverses_the_route_set_and_acks_the_2xx() -> None:
    invite = parse_request(INVITE)
    ok = make_response(invite, 200, to_tag="b1")
    ok.headers.add("Contact", "<sip:room@198.51.100.7:5070>")
    response = parse_message(encode(ok))
    assert isinstance(response, Response)
    dialog = Dialog.as_uac(invite, response)
    assert dialog.id == ("call-1", "a1", "b1")
    assert [str(route.uri) for route in dialog.route_set] == [
        "sip:p2.example.com;lr",
        "sip:p1.example.com;lr",
    ]
    ack = dialog.create_ack(10, host="192.0.2.1", port=5062)
    assert str(ack.uri) == "sip:room@198.51.100.7:5070"
    assert ack.headers["CSeq"] == "10 ACK"
    assert ack.headers["To"] == "<sip:room@bridge.example.com>;tag=b1"
    assert dialog.local_seq == 10
    assert dialog.create_request("BYE", host="192.0.2.1").cseq.sequence == 11


def test_strict_route_puts_the_target_last() -> None:
    dialog = uas_dialog()
    dialog.route_set = [Address.parse("<sip:strict.example.com>")]
    bye = dialog.create_request("BYE", host="192.0.2.100")
    assert str(bye.uri) == "sip:strict.example.com"
    assert bye.headers.getlist("Route") == ["<sip:alice@192.0.2.1:5062>"]


def test_receive_request_orders_cseq_and_refreshes_target() -> None:
    dialog = uas_dialog()
    reinvite = parse_request(
        INVITE.replace(b"CSeq: 10", b"CSeq: 11").replace(b"192.0.2.1:5062>", b"192.0.2.77:5062>")
    )
    dialog.receive_request(reinvite)
    assert dialog.remote_seq == 11
    assert str(dialog.remote_target) == "sip:alice@192.0.2.77:5062"
    old = parse_request(INVITE.replace(b"CSeq: 10 INVITE", b"CSeq: 9 INVITE"))
    with pytest.raises(SipError) as caught:
        dialog.receive_request(old)
    assert caught.value.status == 500


def test_cancel_copies_the_invite_identity() -> None:
    cancel = create_cancel(parse_request(INVITE))
    assert cancel.method == "CANCEL"
    assert cancel.headers["CSeq"] == "10 CANCEL"
    assert cancel.headers["Via"] == "SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bKabc"
    assert cancel.headers["To"] == "<sip:room@bridge.example.com>"
