"""DTMF in SIP INFO bodies: `application/dtmf-relay` (Signal=/Duration=) and `application/dtmf`.

Sans-I/O: bytes in, a digit out, or an InfoBodyError whose status the UA answers with.
"""

from __future__ import annotations

DTMF_TYPES = ("application/dtmf-relay", "application/dtmf")
DIGITS = "0123456789*#ABCD"
# Some phones send the RFC 4733 event number instead of the key: 10 is *, 11 is #, 12-15 A-D.
_BY_EVENT = {str(code): DIGITS[code] for code in range(16)}


class InfoBodyError(ValueError):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _digit(value: str) -> str:
    value = value.strip().upper()
    if value in _BY_EVENT:
        return _BY_EVENT[value]
    if len(value) == 1 and value in DIGITS:
        return value
    raise InfoBodyError(400, f"Bad DTMF signal {value[:16]!r}")


def dtmf_from_info(content_type: str | None, body: bytes) -> str | None:
    """The digit an INFO carries; None for an empty INFO (a keep-alive, answered 200)."""
    if not body.strip():
        return None
    media = (content_type or "").split(";")[0].strip().lower()
    if media not in DTMF_TYPES:
        raise InfoBodyError(415, f"Unsupported INFO body {media or 'without Content-Type'}")
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise InfoBodyError(400, "DTMF body is not ASCII") from None
    if media == "application/dtmf":
        return _digit(text)
    fields: dict[str, str] = {}
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            continue
        name, separator, value = line.partition("=")
        if not separator:
            raise InfoBodyError(400, f"Bad dtmf-relay line {line[:32]!r}")
        fields[name.strip().lower()] = value.strip()
    if "signal" not in fields:
        raise InfoBodyError(400, "dtmf-relay body without Signal=")
    duration = fields.get("duration", "")
    if duration and not duration.isdigit():
        raise InfoBodyError(400, f"Bad dtmf-relay Duration {duration[:16]!r}")
    return _digit(fields["signal"])
