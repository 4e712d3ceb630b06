"""RFC 3515 REFER and its implicit subscription, sans-I/O: the headers and the message/sipfrag
bodies the UA core reads and writes for blind transfers.

The bridge is the transferor when the API transfers a participant (it sends REFER and reads the
NOTIFYs), and the transferee when a peer asks it by REFER to move the call (it answers 202 and
reports the outcome by NOTIFY).
"""

from __future__ import annotations

import re

from sipmessage import URI, Address, Request

from bridge.sip.message import SipError, reason_phrase

SIPFRAG = "message/sipfrag"
_STATUS_LINE = re.compile(rb"^\s*SIP/2\.0 (\d{3})(?: ([^\r\n]*))?")


def refer_target(request: Request) -> URI:
    """The one Refer-To URI of a REFER (compact form `r` too), a SIP URI; else the SipError
    to answer with."""
    values = request.headers.getlist("Refer-To") + request.headers.getlist("r")
    if len(values) != 1:
        raise SipError(400, "A REFER needs exactly one Refer-To")
    try:
        target = Address.parse(values[0]).uri
    except ValueError as exc:
        raise SipError(400, "Malformed Refer-To") from exc
    if target.scheme.lower() not in ("sip", "sips") or not target.host:
        raise SipError(416, "Refer-To must be a SIP URI")
    return target


def sipfrag(status: int, reason: str | None = None) -> bytes:
    """The body of a NOTIFY reporting the referred call's progress (RFC 3515 §2.4.5)."""
    text = (reason or reason_phrase(status)).replace("\r", " ").replace("\n", " ")
    return f"SIP/2.0 {status} {text}\r\n".encode()


def notified_status(request: Request) -> tuple[int, str] | None:
    """The status line a transferee's NOTIFY reports, or None when the body says nothing."""
    match = _STATUS_LINE.match(request.body or b"")
    if match is None:
        return None
    return int(match.group(1)), (match.group(2) or b"").decode(errors="replace")


def is_refer_event(request: Request) -> bool:
    event = (request.headers.get("Event") or request.headers.get("o") or "").strip()
    return event.split(";", 1)[0].strip().lower() == "refer"


def subscription_ended(request: Request) -> bool:
    state = request.headers.get("Subscription-State") or ""
    return state.split(";", 1)[0].strip().lower() == "terminated"
