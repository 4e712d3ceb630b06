"""SIP message parsing, framing and building on top of sipmessage.

sipmessage 0.7.1 parses headers into typed values but neither unfolds continuation lines, frames
by Content-Length, accepts LF-only line ends, nor rejects most malformed messages. This module
reads the raw bytes itself, builds sipmessage ``Request``/``Response`` objects and validates what
the rest of the stack relies on, so every peer mistake becomes a :class:`SipError` carrying the
status to answer with.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from collections.abc import Iterable

from sipmessage import URI, Address, CSeq, Request, Response, Via
from sipmessage.message import COMPACT_FORMS

MAX_MESSAGE_BYTES = 65535
SIP_VERSION = "SIP/2.0"
SIP_URI_SCHEMES = frozenset({"sip", "sips", "tel"})
MAGIC_COOKIE = "z9hG4bK"

REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    422: "Session Interval Too Small",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    486: "Busy Here",
    487: "Request Terminated",
    489: "Bad Event",
    488: "Not Acceptable Here",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}

# Headers whose spelling we normalise so that copies and lookups read the same everywhere.
_CANONICAL_NAMES = {
    name.lower(): name
    for name in (
        "Accept",
        "Accept-Encoding",
        "Allow",
        "Authorization",
        "Call-ID",
        "Contact",
        "Content-Disposition",
        "Content-Encoding",
        "Content-Length",
        "Content-Type",
        "CSeq",
        "Date",
        "Expires",
        "From",
        "Max-Forwards",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Require",
        "Record-Route",
        "Require",
        "Route",
        "Server",
        "Supported",
        "To",
        "Unsupported",
        "User-Agent",
        "Via",
        "Warning",
        "WWW-Authenticate",
    )
}
_LIST_HEADERS = frozenset({"Via", "Contact", "Route", "Record-Route"})
_SINGLE_HEADERS = frozenset(
    {"From", "To", "Call-ID", "CSeq", "Max-Forwards", "Content-Length", "Content-Type"}
)
_REQUIRED_HEADERS = ("Via", "From", "To", "Call-ID", "CSeq")

_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_HEADER_LINE = re.compile(rf"^({_TOKEN})[ \t]*:(.*)$", re.S)
_METHOD = re.compile(rf"^{_TOKEN}$")
_VERSION = re.compile(r"^SIP/\d+\.\d+$", re.I)
_STATUS_LINE = re.compile(r"^SIP/2\.0 (\d+)(?: (.*))?$", re.S)
_URI_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+\-.]*):")
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_LINE_END = re.compile(r"\r?\n")
_NAME_ADDR = re.compile(r'^(?:"(?:[^"\\]|\\.)*"|[^<"]*)\s*<([^>]*)>', re.S)
_TAG_PARAM = re.compile(r";\s*tag\s*=\s*([^\s;,]+)", re.I)
_HOSTNAME = re.compile(
    r"^(?=.{1,253}\.?$)(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.?$"
)
_MAX_CSEQ = 2**31 - 1


class SipError(Exception):
    """The peer sent something we cannot accept; carries the answer to give.

    ``status`` None means: drop silently (a bad response cannot be answered).
    """

    def __init__(
        self,
        status: int | None,
        reason: str,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.headers: tuple[tuple[str, str], ...] = tuple(headers)


# -- identifiers ---------------------------------------------------------------------------------


def new_branch() -> str:
    """A fresh RFC 3261 branch (magic cookie + 64 random bits)."""
    return MAGIC_COOKIE + secrets.token_hex(8)


def new_tag() -> str:
    return secrets.token_hex(6)


def new_call_id(host: str) -> str:
    return f"{secrets.token_hex(12)}@{host}"


def reason_phrase(code: int) -> str:
    return REASON_PHRASES.get(code, "Unknown")


# -- address checks shared with the transaction layer ---------------------------------------------


def valid_host(host: str) -> bool:
    """True for an IPv4/IPv6 literal (IPv6 with or without brackets) or a DNS host name."""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(_HOSTNAME.match(host)) and not host.replace(".", "").isdigit()
    return True


def valid_port(port: int | None) -> bool:
    return port is None or 1 <= port <= 65535


def header_tag(message: Request | Response, name: str) -> str | None:
    """The ``tag`` parameter of From or To, tolerant of URIs sipmessage cannot parse."""
    value = message.headers.get(name)
    if value is None:
        return None
    try:
        return Address.parse(value).parameters.get("tag")
    except ValueError:
        match = _NAME_ADDR.match(value)
        tail = value[match.end() :] if match else value
        found = _TAG_PARAM.search(tail)
        return found.group(1) if found else None


# -- parsing -------------------------------------------------------------------------------------


def parse_message(data: bytes, max_size: int = MAX_MESSAGE_BYTES) -> Request | Response:
    """Parse one datagram (or one framed stream message) into a validated message.

    Raises SipError for every problem; no other exception escapes whatever the bytes.
    """
    if len(data) > max_size:
        raise SipError(513, f"Message larger than {max_size} bytes")
    is_response = data.lstrip(b"\r\n").startswith(b"SIP/")
    try:
        return _parse(data)
    except SipError as error:
        if is_response:
            error.status = None
        raise
    except Exception as exc:  # a safety net: peer bytes must never crash the caller
        raise SipError(None if is_response else 400, f"Malformed message ({exc})") from exc


def _parse(data: bytes) -> Request | Response:
    data = data.lstrip(b"\r\n")
    end = _HEADER_END.search(data)
    if end is None:
        raise SipError(400, "No empty line after the headers")
    try:
        head = data[: end.start()].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipError(400, "Headers are not UTF-8") from exc
    rest = data[end.end() :]
    lines = unfold_lines(head)
    message = _start_line(lines[0])
    for line in lines[1:]:
        name, value = _header(line)
        if name in _LIST_HEADERS:
            for item in split_list(value):
                message.headers.add(name, item)
        else:
            message.headers.add(name, value)
    message.body = _body(message, rest)
    _check_headers(message)
    return message


def unfold_lines(head: str) -> list[str]:
    """Split the header block into logical lines, joining continuation lines with one space."""
    lines: list[str] = []
    for line in _LINE_END.split(head):
        if line[:1] in (" ", "\t") and lines:
            lines[-1] = lines[-1].rstrip(" \t") + " " + line.strip(" \t")
        else:
            lines.append(line)
    return lines


def split_list(value: str) -> list[str]:
    """Split a comma-separated header value, ignoring commas in quotes and angle brackets."""
    items: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    angle = 0
    for char in value:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif not quoted and char == "<":
            angle += 1
        elif not quoted and char == ">":
            angle = max(0, angle - 1)
        elif char == "," and not quoted and angle == 0:
            items.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    items.append("".join(current).strip())
    return items


def _start_line(line: str) -> Request | Response:
    if line.startswith("SIP/"):
        match = _STATUS_LINE.match(line)
        if match is None or len(match.group(1)) != 3:
            raise SipError(None, "Malformed Status-Line")
        code = int(match.group(1))
        if not 100 <= code <= 699:
            raise SipError(None, f"Status code {code} out of range")
        return Response(code=code, phrase=match.group(2) or "")
    parts = line.split(" ")
    if len(parts) == 3 and all(parts) and _VERSION.match(parts[2]) and parts[2] != SIP_VERSION:
        raise SipError(505, f"SIP version {parts[2]} not supported")
    if len(parts) != 3 or not all(parts) or parts[2] != SIP_VERSION:
        raise SipError(400, "Malformed Request-Line")
    method, raw_uri, _version = parts
    if not _METHOD.match(method):
        raise SipError(400, "Malformed method")
    return Request(method=method, uri=_request_uri(raw_uri))


def _request_uri(raw: str) -> URI:
    if raw.startswith("<"):
        raise SipError(400, "Request-URI enclosed in <>")
    scheme = _URI_SCHEME.match(raw)
    if scheme is None:
        raise SipError(400, "Request-URI has no scheme")
    if scheme.group(1).lower() not in SIP_URI_SCHEMES:
        raise SipError(416, f"Unsupported URI scheme {scheme.group(1)!r}")
    try:
        return URI.parse(raw)
    except ValueError:
        pass
    if "?" in raw.rpartition("@")[2]:
        raise SipError(400, "Escaped headers in the Request-URI")
    raise SipError(400, "Malformed Request-URI")


def _header(line: str) -> tuple[str, str]:
    match = _HEADER_LINE.match(line)
    if match is None:
        raise SipError(400, f"Malformed header line {line[:40]!r}")
    name = match.group(1)
    lowered = name.lower()
    name = COMPACT_FORMS.get(lowered, _CANONICAL_NAMES.get(lowered, name))
    return _CANONICAL_NAMES.get(name.lower(), name), match.group(2).strip(" \t")


def _body(message: Request | Response, rest: bytes) -> bytes:
    """Frame the body by Content-Length; without one a datagram's body runs to its end."""
    values = message.headers.getlist("Content-Length")
    if not values:
        return rest
    if len(values) > 1:
        raise SipError(400, "Several Content-Length values")
    length = parse_content_length(values[0])
    if length > len(rest):
        raise SipError(400, "Content-Length larger than the message")
    return rest[:length]


def parse_content_length(value: str) -> int:
    value = value.strip()
    if not value.isdigit() or not value.isascii() or len(value) > 10:
        raise SipError(400, f"Invalid Content-Length {value[:20]!r}")
    return int(value)


def _check_headers(message: Request | Response) -> None:
    for name in _REQUIRED_HEADERS:
        if not message.headers.getlist(name):
            raise SipError(400, f"Missing {name} header")
    for name in _SINGLE_HEADERS:
        if len(message.headers.getlist(name)) > 1:
            raise SipError(400, f"Several {name} headers")
    cseq = _cseq(message)
    if isinstance(message, Request) and cseq.method != message.method:
        raise SipError(400, "CSeq method does not match the request method")
    if not message.call_id.strip():
        raise SipError(400, "Empty Call-ID")
    for value in message.headers.getlist("Via"):
        try:
            via = Via.parse(value)
        except ValueError as exc:
            raise SipError(400, "Malformed Via header") from exc
        if not via.transport or not valid_port(via.port):
            raise SipError(400, "Invalid port in Via")
    if isinstance(message, Response) and len(message.headers.getlist("Via")) != 1:
        raise SipError(None, "Response with more than one Via")
    for name in ("From", "To"):
        check_address(name, message.headers[name])
    contacts = message.headers.getlist("Contact")
    if contacts != ["*"]:
        for value in contacts:
            check_address("Contact", value)


def _cseq(message: Request | Response) -> CSeq:
    try:
        cseq = message.cseq
    except ValueError as exc:
        raise SipError(400, "Malformed CSeq header") from exc
    if cseq.sequence > _MAX_CSEQ:
        raise SipError(400, "CSeq number too large")
    return cseq


def check_address(name: str, value: str) -> None:
    """Validate a name-addr/addr-spec header value.

    URIs of other schemes and SIP URIs with escaped headers inside <> are valid SIP (RFC 4475
    3.3.4, 3.3.14) though sipmessage cannot parse them: they are accepted here as opaque.
    """
    try:
        Address.parse(value)
        return
    except ValueError:
        pass
    name_addr = _NAME_ADDR.match(value)
    uri = name_addr.group(1) if name_addr else re.split(r"[;\s]", value.strip(), maxsplit=1)[0]
    scheme = _URI_SCHEME.match(uri)
    if scheme is not None and scheme.group(1).lower() not in SIP_URI_SCHEMES:
        return
    if name_addr and "?" in uri:
        stripped = value[: name_addr.start(1)] + uri.split("?", 1)[0] + value[name_addr.end(1) :]
        try:
            Address.parse(stripped)
            return
        except ValueError:
            pass
    raise SipError(400, f"Malformed {name} header")


# -- error answers for unparseable requests --------------------------------------------------------


def error_response(data: bytes, error: SipError) -> bytes | None:
    """A best-effort stateless answer built from the raw lines of a request we could not parse."""
    if error.status is None:
        return None
    head = _HEADER_END.split(data.lstrip(b"\r\n"), maxsplit=1)[0].decode("latin-1")
    lines = unfold_lines(head)
    if not lines or lines[0].startswith("SIP/"):
        return None
    copied: dict[str, list[str]] = {}
    for line in lines[1:]:
        match = _HEADER_LINE.match(line)
        if match is None:
            continue
        try:
            name, value = _header(line)
        except SipError:
            continue
        if name in ("Via", "From", "To", "Call-ID", "CSeq") and _printable(value):
            copied.setdefault(name, []).append(value)
    if not copied.get("Via"):
        return None
    out = [f"{SIP_VERSION} {error.status} {_clean(error.reason) or reason_phrase(error.status)}"]
    out += [f"Via: {value}" for value in copied["Via"]]
    for name in ("From", "To", "Call-ID", "CSeq"):
        for value in copied.get(name, [])[:1]:
            if name == "To" and not _TAG_PARAM.search(value.rpartition(">")[2] or value):
                value = f"{value};tag={new_tag()}"
            out.append(f"{name}: {value}")
    out += [f"{name}: {_clean(value)}" for name, value in error.headers]
    out += ["Content-Length: 0", "", ""]
    return "\r\n".join(out).encode("latin-1", errors="replace")


def _printable(value: str) -> bool:
    return all(ord(char) >= 0x20 and char != "\x7f" for char in value)


def _clean(text: str) -> str:
    return "".join(char if " " <= char < "\x7f" else "?" for char in text).strip()


# -- building ------------------------------------------------------------------------------------


def make_response(
    request: Request,
    code: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> Response:
    """Build a response per RFC 3261 §8.2.6 from the request's header text.

    The To tag is ``to_tag`` or, when None, a new one (except for 100). Pass the same tag for
    every response of a dialog. Header text is copied, never re-serialised, because sipmessage's
    ``__str__`` percent-encodes quoted parameter values.
    """
    response = Response(code=code, phrase=reason if reason is not None else reason_phrase(code))
    for value in request.headers.getlist("Via"):
        response.headers.add("Via", value)
    response.headers.add("From", request.headers["From"])
    to_value = request.headers["To"]
    if header_tag(request, "To") is None and (code != 100 or to_tag is not None):
        to_value = f"{to_value};tag={to_tag or new_tag()}"
    response.headers.add("To", to_value)
    response.headers.add("Call-ID", request.headers["Call-ID"])
    response.headers.add("CSeq", request.headers["CSeq"])
    if request.method == "INVITE" and 100 < code < 300:
        for value in request.headers.getlist("Record-Route"):
            response.headers.add("Record-Route", value)
    for name, value in headers:
        response.headers.add(name, value)
    if content_type is not None:
        response.headers.add("Content-Type", content_type)
    response.body = body
    return response


def encode(message: Request | Response) -> bytes:
    """Serialise with exactly one, correct Content-Length (sipmessage omits it)."""
    if isinstance(message, Request):
        lines = [f"{message.method} {message.uri} {SIP_VERSION}"]
    else:
        lines = [f"{SIP_VERSION} {message.code} {message.phrase}"]
    for name in list(message.headers.keys()):
        if name.lower() == "content-length":
            continue
        lines += [f"{name}: {value}" for value in message.headers.getlist(name)]
    lines += [f"Content-Length: {len(message.body)}", "", ""]
    return "\r\n".join(lines).encode("utf-8") + message.body


# -- stream framing ------------------------------------------------------------------------------

_STREAM_CONTENT_LENGTH = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*(.*?)[ \t]*$", re.I | re.M)


class StreamFramer:
    """Cut a TCP byte stream into whole SIP messages by Content-Length (RFC 3261 §18.3).

    CRLF keep-alives between messages are skipped. A SipError means the stream cannot be
    resynchronised and the connection should be closed.
    """

    def __init__(self, max_size: int = MAX_MESSAGE_BYTES) -> None:
        self.max_size = max_size
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        messages: list[bytes] = []
        while True:
            while self._buffer[:2] == b"\r\n" or self._buffer[:1] == b"\n":
                del self._buffer[: 2 if self._buffer[:1] == b"\r" else 1]
            if self._buffer == b"\r":
                break
            end = _HEADER_END.search(self._buffer)
            if end is None:
                if len(self._buffer) > self.max_size:
                    raise SipError(513, "Headers larger than the maximum message size")
                break
            head = bytes(self._buffer[: end.start()])
            values = [value.decode("latin-1") for value in _STREAM_CONTENT_LENGTH.findall(head)]
            if not values:
                raise SipError(400, "Content-Length is required on stream transports")
            if len(set(values)) > 1:
                raise SipError(400, "Several Content-Length values")
            total = end.end() + parse_content_length(values[0])
            if total > self.max_size:
                raise SipError(513, f"Message larger than {self.max_size} bytes")
            if len(self._buffer) < total:
                break
            messages.append(bytes(self._buffer[:total]))
            del self._buffer[:total]
        return messages
