"""DTMF in SIP INFO: bodies parsed to digits; malformed ones 400, other types 415."""

from __future__ import annotations

import pytest

from bridge.sip.info import InfoBodyError, dtmf_from_info

RELAY = "application/dtmf-relay"


@pytest.mark.parametrize(
    ("content_type", "body", "digit"),
    [
        (RELAY, b"Signal=5\r\nDuration=160\r\n", "5"),
        (RELAY, b"Signal= #\nDuration=250", "#"),
        (RELAY, b"signal=11\r\n", "#"),  # the RFC 4733 event number for #
        (RELAY, b"Signal=*\r\nDuration=100\r\n", "*"),
        ("application/dtmf", b"7", "7"),
        ("application/dtmf;charset=ascii", b"d\r\n", "D"),
        (None, b"", None),  # an empty INFO is a keep-alive
    ],
)
def test_digits(content_type: str | None, body: bytes, digit: str | None) -> None:
    assert dtmf_from_info(content_type, body) == digit


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        (RELAY, b"Duration=160\r\n", 400),
        (RELAY, b"Signal=X\r\n", 400),
        (RELAY, b"Signal=5\r\nDuration=long\r\n", 400),
        (RELAY, b"garbage without equals", 400),
        (RELAY, b"Signal=\xff\r\n", 400),
        ("application/dtmf", b"55", 400),
        ("text/plain", b"Signal=5", 415),
        (None, b"Signal=5", 415),
    ],
)
def test_bad_bodies(content_type: str | None, body: bytes, status: int) -> None:
    with pytest.raises(InfoBodyError) as caught:
        dtmf_from_info(content_type, body)
    assert caught.value.status == status
