"""SDP parsing and RFC 3264 offer/answer for one audio stream, sans-I/O.

The parser is strict where a mistake would make us send audio to the wrong place or with
the wrong codec (m=, c=, rtpmap, ports, payload types) and lenient where real phones are
sloppy (LF-only line ends, trailing blanks, unknown lines and attributes, a missing s=).
Errors carry the SIP status to answer with: 400 for a malformed body, 488 when the body is
well formed but offers nothing we can use.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = [
    "DIRECTIONS",
    "AudioSession",
    "MediaDescription",
    "MediaFormat",
    "Origin",
    "SdpError",
    "SessionDescription",
    "build_answer",
    "build_offer",
    "negotiate_answer",
    "negotiate_offer",
    "parse_sdp",
]

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
_ANSWER_DIRECTION = {
    "sendrecv": "sendrecv",
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
}
# Plain RTP profiles we serve by default; SRTP ones (RTP/SAVP) only when the caller passes
# them (`bridge/sip/sdes.py` decides by `rtp.srtp`).
_RTP_PROFILES = ("RTP/AVP", "RTP/AVPF")
TELEPHONE_EVENT = "telephone-event"
_DTMF_EVENTS = "0-16"
_ANSWER_PTIME_MS = 20
_SESSION_NAME = "confbridge"
_ORIGIN_USER = "confbridge"

# RFC 3551 static payload types: usable without an a=rtpmap line.
_STATIC_FORMATS: dict[int, tuple[str, int, int]] = {
    0: ("PCMU", 8000, 1),
    3: ("GSM", 8000, 1),
    4: ("G723", 8000, 1),
    5: ("DVI4", 8000, 1),
    6: ("DVI4", 16000, 1),
    7: ("LPC", 8000, 1),
    8: ("PCMA", 8000, 1),
    9: ("G722", 8000, 1),
    10: ("L16", 44100, 2),
    11: ("L16", 44100, 1),
    12: ("QCELP", 8000, 1),
    13: ("CN", 8000, 1),
    14: ("MPA", 90000, 1),
    15: ("G728", 8000, 1),
    16: ("DVI4", 11025, 1),
    17: ("DVI4", 22050, 1),
    18: ("G729", 8000, 1),
    25: ("CelB", 90000, 1),
    26: ("JPEG", 90000, 1),
    28: ("nv", 90000, 1),
    31: ("H261", 90000, 1),
    32: ("MPV", 90000, 1),
    33: ("MP2T", 90000, 1),
    34: ("H263", 90000, 1),
}
# Payload types we put in our own offers for codecs that have a static one.
_OFFER_PAYLOAD_TYPES = {"PCMU": 0, "PCMA": 8, "G722": 9}
OPUS = "opus"
OPUS_OFFER_PT = 111
TELEPHONE_EVENT_48K_PT = 110  # next to 101 at 8000, when we offer Opus
OPUS_FMTP = "useinbandfec=1;usedtx=1"
"""What we ask of an Opus peer (RFC 7587 §6.1): FEC in its packets; DTX welcome."""

_LINE_RE = re.compile(r"^([a-z])=(.*)$")
_TOKEN_RE = re.compile(r"^[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+$")
_PORT_RE = re.compile(r"^(\d{1,5})(?:/\d+)?$")
_RTPMAP_RE = re.compile(r"^(\d{1,3})\s+([^/\s]+)/(\d{1,6})(?:/(\d{1,2}))?$")
_FMTP_RE = re.compile(r"^(\d{1,3})\s+(.+)$")


class SdpError(ValueError):
    """The peer's SDP cannot be used; ``status`` is the SIP response code to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class MediaFormat:
    """One RTP payload format of an m= line (rtpmap + fmtp folded together)."""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int = 1
    fmtp: str | None = None

    def is_named(self, name: str) -> bool:
        """Encoding names are case-insensitive (RFC 4855 §3)."""
        return self.encoding.upper() == name.upper()


@dataclass(frozen=True)
class Origin:
    """The o= line; ids kept as text because phones send numbers wider than 64 bits."""

    username: str
    session_id: str
    version: str
    net_type: str
    addr_type: str
    address: str


@dataclass(frozen=True)
class MediaDescription:
    """One m= section. ``formats`` holds the payload formats we could identify; ``format_ids``
    the m= line's list verbatim, which a rejected stream must echo (RFC 3264 §6)."""

    media: str
    port: int
    proto: str
    formats: tuple[MediaFormat, ...]
    connection: str | None
    direction: str | None
    ptime: int | None
    format_ids: tuple[str, ...] = ()
    attributes: tuple[tuple[str, str | None], ...] = ()


@dataclass(frozen=True)
class SessionDescription:
    """A parsed SDP body; session-level ``connection``/``direction`` are media defaults."""

    origin: Origin
    session_name: str
    connection: str | None
    direction: str | None
    media: tuple[MediaDescription, ...]
    attributes: tuple[tuple[str, str | None], ...] = ()

    def connection_for(self, media: MediaDescription) -> str | None:
        """A media-level c= overrides the session-level one (RFC 4566 §5.7)."""
        return media.connection if media.connection is not None else self.connection

    def direction_for(self, media: MediaDescription) -> str:
        """Media-level direction, else session-level, else the default sendrecv."""
        return media.direction or self.direction or "sendrecv"


@dataclass(frozen=True)
class AudioSession:
    """The negotiated audio stream, with ``direction`` as the remote side declared it."""

    remote_host: str
    remote_port: int
    codec: MediaFormat
    telephone_event: MediaFormat | None
    direction: str
    ptime: int | None = None
    media: MediaDescription | None = field(default=None, compare=False)  # the m= section used

    @property
    def on_hold(self) -> bool:
        """RFC 3264 §8.4 hold, plus the RFC 2543 habit of a 0.0.0.0 connection address."""
        return self.direction in ("sendonly", "inactive") or self.remote_host in ("0.0.0.0", "::")


# --------------------------------------------------------------------------- parsing


class _MediaBuilder:
    """Collects one m= section's lines; turned into a frozen MediaDescription at the end."""

    def __init__(self, media: str, port: int, proto: str, format_ids: tuple[str, ...]) -> None:
        self.media = media
        self.port = port
        self.proto = proto
        self.format_ids = format_ids
        self.connection: str | None = None
        self.direction: str | None = None
        self.ptime: int | None = None
        self.rtpmap: dict[int, tuple[str, int, int]] = {}
        self.fmtp: dict[int, str] = {}
        self.attributes: list[tuple[str, str | None]] = []

    @property
    def is_rtp(self) -> bool:
        return self.proto.upper().startswith("RTP/")

    def build(self) -> MediaDescription:
        formats: list[MediaFormat] = []
        if self.is_rtp:
            for fmt in self.format_ids:
                pt = int(fmt)
                known = self.rtpmap.get(pt) or _STATIC_FORMATS.get(pt)
                if known is not None:
                    encoding, rate, channels = known
                    formats.append(MediaFormat(pt, encoding, rate, channels, self.fmtp.get(pt)))
        return MediaDescription(
            media=self.media,
            port=self.port,
            proto=self.proto,
            formats=tuple(formats),
            connection=self.connection,
            direction=self.direction,
            ptime=self.ptime,
            format_ids=self.format_ids,
            attributes=tuple(self.attributes),
        )


def parse_sdp(data: bytes) -> SessionDescription:
    """Parse an SDP body; raises SdpError(400) naming the first bad line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SdpError(f"SDP is not valid UTF-8 (byte {exc.start})") from None
    lines = [(number, line.rstrip()) for number, line in enumerate(text.split("\n"), start=1)]
    lines = [(number, line) for number, line in lines if line]
    if not lines:
        raise SdpError("SDP body is empty")
    first_number, first = lines[0]
    if first != "v=0":
        raise SdpError(f"SDP line {first_number}: expected 'v=0' first, got {first!r}")

    origin: Origin | None = None
    session_name = ""
    session_connection: str | None = None
    session_direction: str | None = None
    session_attributes: list[tuple[str, str | None]] = []
    media: list[_MediaBuilder] = []

    for number, line in lines[1:]:
        match = _LINE_RE.match(line)
        if match is None:
            raise SdpError(f"SDP line {number}: not a '<type>=<value>' line: {line!r}")
        kind, value = match.group(1), match.group(2)
        current = media[-1] if media else None
        if kind == "v":
            raise SdpError(f"SDP line {number}: second v= line")
        if kind == "o":
            if current is not None or origin is not None:
                raise SdpError(f"SDP line {number}: misplaced o= line {line!r}")
            origin = _parse_origin(number, line, value)
        elif kind == "s" and current is None:
            session_name = value
        elif kind == "c":
            address = _parse_connection(number, line, value)
            if current is None:
                session_connection = address
            else:
                current.connection = address
        elif kind == "m":
            media.append(_parse_media_line(number, line, value))
        elif kind == "a":
            name, _, attr_value = value.partition(":")
            has_value = ":" in value
            attribute = (name, attr_value if has_value else None)
            if current is None:
                if name in DIRECTIONS:
                    session_direction = name
                else:
                    session_attributes.append(attribute)
            else:
                _apply_media_attribute(number, line, current, attribute)
        # b=, t=, r=, z=, k=, i=, u=, e=, p= carry nothing we act on: ignored.

    if origin is None:
        raise SdpError("SDP has no o= line")
    for index, section in enumerate(media, start=1):
        if section.port != 0 and section.connection is None and session_connection is None:
            raise SdpError(f"SDP m= section {index} ({section.media}) has no c= line")
    return SessionDescription(
        origin=origin,
        session_name=session_name,
        connection=session_connection,
        direction=session_direction,
        media=tuple(section.build() for section in media),
        attributes=tuple(session_attributes),
    )


def _parse_origin(number: int, line: str, value: str) -> Origin:
    parts = value.split()
    if len(parts) != 6 or parts[3] != "IN" or parts[4] not in ("IP4", "IP6"):
        raise SdpError(f"SDP line {number}: bad o= line {line!r}")
    return Origin(*parts)


def _parse_connection(number: int, line: str, value: str) -> str:
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError(f"SDP line {number}: bad c= line {line!r}")
    # Multicast addresses may carry /ttl and /count suffixes (RFC 4566 §5.7).
    address = parts[2].split("/", 1)[0]
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        raise SdpError(f"SDP line {number}: bad address in c= line {line!r}") from None
    if parsed.version != (4 if parts[1] == "IP4" else 6):
        raise SdpError(f"SDP line {number}: address type does not match in c= line {line!r}")
    return address


def _parse_media_line(number: int, line: str, value: str) -> _MediaBuilder:
    parts = value.split()
    port_match = _PORT_RE.match(parts[1]) if len(parts) >= 4 else None
    if port_match is None or not _TOKEN_RE.match(parts[0]) or int(port_match.group(1)) > 65535:
        raise SdpError(f"SDP line {number}: bad m= line {line!r}")
    section = _MediaBuilder(parts[0], int(port_match.group(1)), parts[2], tuple(parts[3:]))
    if section.is_rtp:
        for fmt in section.format_ids:
            if not fmt.isdigit() or int(fmt) > 127:
                raise SdpError(f"SDP line {number}: bad payload type {fmt!r} in m= line {line!r}")
    return section


def _apply_media_attribute(
    number: int, line: str, section: _MediaBuilder, attribute: tuple[str, str | None]
) -> None:
    name, value = attribute
    if name in DIRECTIONS:
        section.direction = name
    elif name == "rtpmap" and section.is_rtp:
        match = _RTPMAP_RE.match(value or "")
        if match is None or int(match.group(1)) > 127 or int(match.group(3)) == 0:
            raise SdpError(f"SDP line {number}: bad rtpmap {line!r}")
        channels = int(match.group(4)) if match.group(4) else 1
        section.rtpmap[int(match.group(1))] = (match.group(2), int(match.group(3)), channels)
    elif name == "fmtp" and section.is_rtp:
        match = _FMTP_RE.match(value or "")
        if match is None:
            raise SdpError(f"SDP line {number}: bad fmtp {line!r}")
        section.fmtp[int(match.group(1))] = match.group(2)
    elif name == "ptime":
        try:
            ptime = round(float(value or ""))
        except ValueError:
            raise SdpError(f"SDP line {number}: bad ptime {line!r}") from None
        if not 1 <= ptime <= 1000:
            raise SdpError(f"SDP line {number}: bad ptime {line!r}")
        section.ptime = ptime
    else:
        section.attributes.append(attribute)


# --------------------------------------------------------------------------- negotiation


def _is_usable_audio(media: MediaDescription, profiles: Sequence[str] = _RTP_PROFILES) -> bool:
    return media.media == "audio" and media.port != 0 and media.proto.upper() in profiles


def _pick_codec(media: MediaDescription, names: Sequence[str]) -> MediaFormat | None:
    """The first of ``media``'s formats (the sender's preference order) named in ``names``."""
    wanted = {name.upper() for name in names}
    for fmt in media.formats:
        if fmt.encoding.upper() in wanted and _usable(fmt):
            return fmt
    return None


def _usable(fmt: MediaFormat) -> bool:
    """Mono at the codec's rate; Opus is always `opus/48000/2` (RFC 7587 §7), mixed as mono."""
    if fmt.is_named(OPUS):
        return fmt.clock_rate == 48000 and fmt.channels in (1, 2)
    if fmt.is_named("G722"):
        return fmt.clock_rate == 8000 and fmt.channels == 1
    return fmt.channels == 1


def _pick_telephone_event(media: MediaDescription, clock_rate: int) -> MediaFormat | None:
    for fmt in media.formats:
        if fmt.is_named(TELEPHONE_EVENT) and fmt.clock_rate == clock_rate:
            return fmt
    return None


def _audio_session(
    sdp: SessionDescription, media: MediaDescription, codec: MediaFormat
) -> AudioSession:
    host = sdp.connection_for(media)
    if host is None:  # parse_sdp guarantees a c= for every stream with a port
        raise SdpError("SDP audio stream has no c= line")
    return AudioSession(
        remote_host=host,
        remote_port=media.port,
        codec=codec,
        telephone_event=_pick_telephone_event(media, codec.clock_rate),
        direction=sdp.direction_for(media),
        ptime=media.ptime,
        media=media,
    )


def _names(media: Sequence[MediaDescription]) -> str:
    names = [fmt.encoding for m in media for fmt in m.formats if not fmt.is_named(TELEPHONE_EVENT)]
    return ", ".join(dict.fromkeys(names)) or "none"


def negotiate_offer(
    offer: SessionDescription,
    supported: Sequence[str] = ("PCMU", "PCMA"),
    profiles: Sequence[str] = _RTP_PROFILES,
) -> AudioSession:
    """Choose the audio stream and codec to answer with, in the offerer's preference order."""
    audio = [m for m in offer.media if _is_usable_audio(m, profiles)]
    if not audio:
        raise SdpError("SDP offer has no usable audio stream", status=488)
    for media in audio:
        codec = _pick_codec(media, supported)
        if codec is not None:
            return _audio_session(offer, media, codec)
    raise SdpError(
        f"no common codec: offered {_names(audio)}, supported {', '.join(supported)}",
        status=488,
    )


def negotiate_answer(
    answer: SessionDescription,
    offered_codecs: Sequence[str],
    profiles: Sequence[str] = _RTP_PROFILES,
) -> AudioSession:
    """Read the peer's answer to our offer; 488 if it accepted none of our codecs."""
    audio = [m for m in answer.media if _is_usable_audio(m, profiles)]
    if not audio:
        raise SdpError("SDP answer rejected the audio stream", status=488)
    codec = _pick_codec(audio[0], offered_codecs)
    if codec is None:
        raise SdpError(
            f"SDP answer chose {_names(audio[:1])}, none of the offered "
            f"{', '.join(offered_codecs)}",
            status=488,
        )
    return _audio_session(answer, audio[0], codec)


# --------------------------------------------------------------------------- building


def _address_type(host: str) -> str:
    return "IP6" if ipaddress.ip_address(host).version == 6 else "IP4"


def _session_lines(host: str, session_id: int, version: int) -> list[str]:
    addr_type = _address_type(host)
    return [
        "v=0",
        f"o={_ORIGIN_USER} {session_id} {version} IN {addr_type} {host}",
        f"s={_SESSION_NAME}",
        f"c=IN {addr_type} {host}",
        "t=0 0",
    ]


def _audio_lines(
    port: int,
    proto: str,
    codecs: Sequence[MediaFormat],
    telephone_event: MediaFormat | Sequence[MediaFormat] | None,
    direction: str,
    attributes: Sequence[str] = (),
) -> list[str]:
    if telephone_event is None:
        events: Sequence[MediaFormat] = ()
    elif isinstance(telephone_event, MediaFormat):
        events = (telephone_event,)
    else:
        events = telephone_event
    formats = [*codecs, *events]
    lines = [f"m=audio {port} {proto} {' '.join(str(f.payload_type) for f in formats)}"]
    for fmt in codecs:
        channels = f"/{fmt.channels}" if fmt.channels != 1 else ""
        lines.append(f"a=rtpmap:{fmt.payload_type} {fmt.encoding}/{fmt.clock_rate}{channels}")
        if fmt.fmtp:
            lines.append(f"a=fmtp:{fmt.payload_type} {fmt.fmtp}")
    for event in events:
        pt = event.payload_type
        lines.append(f"a=rtpmap:{pt} {TELEPHONE_EVENT}/{event.clock_rate}")
        lines.append(f"a=fmtp:{pt} {_DTMF_EVENTS}")
    lines += [f"a={attribute}" for attribute in attributes]
    lines.append(f"a=ptime:{_ANSWER_PTIME_MS}")
    lines.append(f"a={direction}")
    return lines


def _encode(lines: list[str]) -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def _check_port(port: int) -> None:
    if not 1 <= port <= 65535:
        raise ValueError(f"local_port must be in 1..65535, got {port}")


def build_answer(
    offer: SessionDescription,
    session: AudioSession,
    *,
    local_host: str,
    local_port: int,
    session_id: int,
    version: int,
    profiles: Sequence[str] = _RTP_PROFILES,
    attributes: Sequence[str] = (),
) -> bytes:
    """Answer ``offer`` accepting the stream ``session`` came from and rejecting the rest.

    RFC 3264 §6: the answer has one m= line per offered one, in order; rejected streams keep
    their format list with port 0. The direction mirrors the offer's (§6.1).
    """
    _check_port(local_port)
    lines = _session_lines(local_host, session_id, version)
    accepted = False
    for media in offer.media:
        chosen = session.media is None or media is session.media
        if (
            not accepted
            and chosen
            and _is_usable_audio(media, profiles)
            and session.codec in media.formats
        ):
            accepted = True
            direction = _ANSWER_DIRECTION[session.direction]
            event = session.telephone_event if session.telephone_event in media.formats else None
            codec = session.codec
            if codec.is_named(OPUS):  # our own receive parameters, not an echo of the peer's
                codec = MediaFormat(codec.payload_type, codec.encoding, 48000, 2, OPUS_FMTP)
            lines += _audio_lines(local_port, media.proto, [codec], event, direction, attributes)
        else:
            lines.append(f"m={media.media} 0 {media.proto} {' '.join(media.format_ids)}")
    if not accepted:
        raise ValueError("session was not negotiated from this offer")
    return _encode(lines)


def build_offer(
    *,
    local_host: str,
    local_port: int,
    session_id: int,
    version: int,
    codecs: Sequence[str] = ("PCMU", "PCMA"),
    telephone_event_pt: int | None = 101,
    direction: str = "sendrecv",
    proto: str = "RTP/AVP",
    attributes: Sequence[str] = (),
) -> bytes:
    """Offer one audio stream with ``codecs`` in our preference order (static payload types);
    ``attributes`` (e.g. SDES crypto lines) go into its m= section."""
    _check_port(local_port)
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    formats: list[MediaFormat] = []
    for name in codecs:
        if name.upper() == OPUS.upper():
            formats.append(MediaFormat(OPUS_OFFER_PT, OPUS, 48000, 2, OPUS_FMTP))
            continue
        pt = _OFFER_PAYLOAD_TYPES.get(name.upper())
        if pt is None:
            raise ValueError(f"no static payload type for codec {name!r}")
        encoding, rate, channels = _STATIC_FORMATS[pt]
        formats.append(MediaFormat(pt, encoding, rate, channels))
    if not formats:
        raise ValueError("build_offer needs at least one codec")
    events: list[MediaFormat] = []
    if telephone_event_pt is not None:
        if not 96 <= telephone_event_pt <= 127:
            raise ValueError(f"telephone_event_pt must be in 96..127, got {telephone_event_pt}")
        if any(f.clock_rate == 8000 for f in formats):
            events.append(MediaFormat(telephone_event_pt, TELEPHONE_EVENT, 8000))
        if any(f.is_named(OPUS) for f in formats):  # telephone-event at Opus' clock rate
            events.append(MediaFormat(TELEPHONE_EVENT_48K_PT, TELEPHONE_EVENT, 48000))
    lines = _session_lines(local_host, session_id, version)
    lines += _audio_lines(local_port, proto, formats, events, direction, attributes)
    return _encode(lines)
