"""UAS request checks of RFC 3261 §8.2 that come after parsing.

The order follows §8.2: method, then headers (Max-Forwards, Require), then content
(Content-Type, Content-Encoding, Accept), so the answer matches what the RFC 4475 torture tests
expect.
"""

from __future__ import annotations

import re

from sipmessage import Address, MediaType, Request

from bridge.sip.message import SipError

SDP = "application/sdp"
_MULTIPART_WITH_SDP = frozenset({"multipart/mixed", "multipart/alternative", "multipart/related"})
_NO_REQUIRE_CHECK = frozenset({"ACK", "CANCEL"})
_ACCEPT_CHECKED = frozenset({"INVITE", "OPTIONS"})
_PART_CONTENT_TYPE = re.compile(rb"^content-type[ \t]*:[ \t]*(.*?)[ \t]*$", re.I | re.M)


def check_request(
    request: Request,
    *,
    allowed_methods: frozenset[str],
    supported: frozenset[str] = frozenset(),
    accepted_types: frozenset[str] = frozenset({SDP}),
) -> None:
    """Raise SipError with the status and headers to answer with, or return when acceptable."""
    allow = (("Allow", ", ".join(sorted(allowed_methods))),)
    if request.method == "REGISTER" and "REGISTER" not in allowed_methods:
        raise SipError(405, "REGISTER not allowed: this is not a registrar", allow)
    if request.method not in allowed_methods:
        raise SipError(501, f"Method {request.method} not implemented", allow)
    _check_max_forwards(request)
    if request.method not in _NO_REQUIRE_CHECK:
        unsupported = [tag for tag in request.require if tag not in supported]
        if unsupported:
            raise SipError(420, "Unsupported extension", (("Unsupported", ", ".join(unsupported)),))
    _check_body(request, accepted_types)
    _check_accept(request)
    if request.method == "INVITE":
        _check_dialog_addresses(request)


def _check_max_forwards(request: Request) -> None:
    values = request.headers.getlist("Max-Forwards")
    if not values:
        return
    value = values[0].strip()
    digits = value.lstrip("0") or "0"
    if not (value.isascii() and value.isdigit()) or len(digits) > 3 or int(digits) > 255:
        raise SipError(400, f"Invalid Max-Forwards {value[:20]!r}")


def _content_type(request: Request) -> MediaType | None:
    try:
        return request.content_type
    except ValueError as exc:
        raise SipError(400, "Malformed Content-Type header") from exc


def _check_body(request: Request, accepted_types: frozenset[str]) -> None:
    if not request.body:
        return
    accept = (("Accept", ", ".join(sorted(accepted_types))),)
    encoding = (request.headers.get("Content-Encoding") or "identity").strip().lower()
    if encoding != "identity":
        raise SipError(
            415, f"Unsupported Content-Encoding {encoding}", (("Accept-Encoding", "identity"),)
        )
    media = _content_type(request)
    if media is None:
        raise SipError(400, "Body without Content-Type")
    mime = media.mime_type.lower()
    if mime in accepted_types:
        return
    if SDP in accepted_types and sdp_body(request) is not None:
        return
    raise SipError(415, f"Unsupported Content-Type {mime}", accept)


def _check_accept(request: Request) -> None:
    if request.method not in _ACCEPT_CHECKED:
        return
    try:
        accepted = request.accept
    except ValueError as exc:
        raise SipError(400, "Malformed Accept header") from exc
    if accepted is None or (not accepted and request.method == "OPTIONS"):
        return
    wanted = {SDP, "application/*", "*/*"}
    if not any(media.mime_type.lower() in wanted for media in accepted):
        raise SipError(406, "Accept excludes application/sdp", (("Accept", SDP),))


def _check_dialog_addresses(request: Request) -> None:
    """The dialog layer needs From, To and Contact as sipmessage addresses."""
    for name in ("From", "To", "Contact"):
        for value in request.headers.getlist(name):
            try:
                Address.parse(value)
            except ValueError as exc:
                raise SipError(400, f"Unsupported URI in {name}") from exc


def sdp_body(request: Request) -> bytes | None:
    """The SDP of the request: the whole body, or the application/sdp part of a multipart."""
    try:
        media = request.content_type
    except ValueError:
        return None
    if media is None or not request.body:
        return None
    mime = media.mime_type.lower()
    if mime == SDP:
        return request.body
    if mime not in _MULTIPART_WITH_SDP:
        return None
    boundary = media.parameters.get("boundary")
    if not boundary:
        return None
    for headers, content in multipart_parts(request.body, boundary.strip('"').encode()):
        found = _PART_CONTENT_TYPE.search(headers)
        if found and found.group(1).split(b";")[0].strip().lower() == SDP.encode():
            return content
    return None


def multipart_parts(body: bytes, boundary: bytes) -> list[tuple[bytes, bytes]]:
    """Split a MIME multipart body (RFC 2046) into (header block, content) pairs."""
    parts: list[tuple[bytes, bytes]] = []
    segments = (b"\r\n" + body).split(b"\r\n--" + boundary)
    for segment in segments[1:]:
        if segment.startswith(b"--"):
            break
        line_end = segment.find(b"\r\n")
        if line_end < 0:
            break
        part = segment[line_end + 2 :]
        if part.startswith(b"\r\n"):
            parts.append((b"", part[2:]))
            continue
        headers, separator, content = part.partition(b"\r\n\r\n")
        if separator:
            parts.append((headers, content))
    return parts
