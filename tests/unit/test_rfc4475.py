"""Every RFC 4475 torture message gets the answer its README table names."""

from __future__ import annotations

from pathlib import Path

import pytest
from sipmessage import Request

from bridge.sip.message import SipError, error_response, parse_message
from bridge.sip.validate import check_request

TORTURE_DIR = Path(__file__).resolve().parents[1] / "data" / "rfc4475"
ALLOWED = frozenset({"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO"})
OK = "parse OK"
DISCARD = "discard"

# file -> acceptable answers (a status, OK or DISCARD), from the README table.
EXPECTED: dict[str, set[int | str]] = {
    "wsinv.dat": {OK},
    "intmeth.dat": {501, 405},
    "esc01.dat": {OK},
    "escnull.dat": {405, 501},
    "esc02.dat": {501},
    "lwsdisp.dat": {OK},
    "longreq.dat": {OK, 513},
    "dblreq.dat": {405, 501},  # the first message only: a REGISTER
    "semiuri.dat": {OK},
    "transports.dat": {OK},
    "mpart01.dat": {415, 501},  # MESSAGE is not ours; with MESSAGE allowed: 415 (no SDP part)
    "unreason.dat": {OK},
    "noreason.dat": {OK},
    "badinv01.dat": {400},
    "clerr.dat": {400, DISCARD},
    "ncl.dat": {400, DISCARD},
    "scalar02.dat": {400},
    "scalarlg.dat": {DISCARD},
    "quotbal.dat": {400},
    "ltgtruri.dat": {400},
    "lwsruri.dat": {400},
    "lwsstart.dat": {400},
    "trws.dat": {400},
    "escruri.dat": {400},
    "baddate.dat": {400, OK},
    "regbadct.dat": {400},
    "badaspec.dat": {400},
    "baddn.dat": {400},
    "badvers.dat": {505},
    "mismatch01.dat": {400},
    "mismatch02.dat": {400},
    "bigcode.dat": {DISCARD},
    "badbranch.dat": {OK},
    "insuf.dat": {400},
    "unkscm.dat": {416},
    "novelsc.dat": {416},
    "unksm2.dat": {405, 501},  # accepted as a message, but REGISTER is not served here
    "bext01.dat": {420},
    "invut.dat": {415},
    "regaut01.dat": {405, 501},
    "multi01.dat": {400},
    "mcl01.dat": {400},
    "bcast.dat": {DISCARD},
    "zeromf.dat": {OK},
    "cparam01.dat": {405, 501},
    "cparam02.dat": {405, 501},
    "regescrt.dat": {405, 501},
    "sdp01.dat": {406},
    "inv2543.dat": {OK},
}


def answer(data: bytes) -> int | str:
    try:
        message = parse_message(data)
        if isinstance(message, Request):
            check_request(message, allowed_methods=ALLOWED)
    except SipError as error:
        return DISCARD if error.status is None else error.status
    return OK


def test_table_covers_every_file() -> None:
    assert {path.name for path in TORTURE_DIR.glob("*.dat")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_torture_message(name: str) -> None:
    assert answer((TORTURE_DIR / name).read_bytes()) in EXPECTED[name]


@pytest.mark.parametrize("name", sorted(n for n, a in EXPECTED.items() if a <= {400, 416, 505}))
def test_rejected_requests_get_a_stateless_answer(name: str) -> None:
    data = (TORTURE_DIR / name).read_bytes()
    with pytest.raises(SipError) as caught:
        message = parse_message(data)
        check_request(message, allowed_methods=ALLOWED)  # type: ignore[arg-type]
    reply = error_response(data, caught.value)
    assert reply is not None
    assert reply.startswith(f"SIP/2.0 {caught.value.status} ".encode())
    assert reply.endswith(b"Content-Length: 0\r\n\r\n")
    assert b"\r\nVia: " in reply


def test_responses_are_never_answered() -> None:
    data = (TORTURE_DIR / "bigcode.dat").read_bytes()
    with pytest.raises(SipError) as caught:
        parse_message(data)
    assert error_response(data, caught.value) is None


def test_dblreq_takes_the_first_message_only() -> None:
    message = parse_message((TORTURE_DIR / "dblreq.dat").read_bytes())
    assert isinstance(message, Request)
    assert message.method == "REGISTER"
    assert message.body == b""


def test_wsinv_unfolds_and_expands_compact_forms() -> None:
    message = parse_message((TORTURE_DIR / "wsinv.dat").read_bytes())
    assert isinstance(message, Request)
    assert [via.host for via in message.via] == [
        "192.0.2.2",
        "spindle.example.com",
        "192.168.255.111",
    ]
    assert message.cseq.sequence == 9
    assert message.to_address.parameters["tag"] == "1918181833n"
    assert message.headers["Subject"] == ""
    assert message.headers["NewFangledHeader"] == "newfangled value continued newfangled value"
    assert len(message.body) == 150


def test_mpart01_with_message_allowed_is_415_without_sdp() -> None:
    message = parse_message((TORTURE_DIR / "mpart01.dat").read_bytes())
    assert isinstance(message, Request)
    with pytest.raises(SipError) as caught:
        check_request(message, allowed_methods=ALLOWED | {"MESSAGE"})
    assert caught.value.status == 415
    assert caught.value.headers == (("Accept", "application/sdp"),)
