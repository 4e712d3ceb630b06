"""RFC 4733 telephone-event (DTMF digits over RTP): payload codec, decoder and sender helper.

One key press is one *event*: a train of packets sharing the event's RTP timestamp, with a
growing duration and, at the end, the same final packet sent three times (RFC 4733 §2.5.1.4).
Phones and gateways differ in the details (the SIPp pcaps start with a zero-duration packet and
repeat the end packet with one sequence number; Asterisk and baresip number each copy), so the
decoder keys on what every sender shares, the (SSRC, timestamp) pair, and reports the digit on
the first usable packet of a new event: lowest latency, and nothing depends on the marker bit.

Sans-I/O: `TelephoneEventDecoder.receive` takes parsed packets and returns a `DigitDetected` or
None; the caller routes packets of the negotiated telephone-event payload type to it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from bridge.rtp.packet import RtpPacket, RtpSender
from bridge.rtp.seq import ts_delta

DIGITS = "0123456789*#ABCD"
"""Event codes 0..15 are the DTMF keys (RFC 4733 §3.2); every other code is ignored here."""

EVENT_PAYLOAD_SIZE = 4
MAX_DURATION = 0xFFFF
"""The largest duration one event (or segment of a long event) can carry, in timestamp units."""

DEFAULT_PAYLOAD_TYPE = 101
UPDATE_INTERVAL_MS = 50
END_PACKET_COPIES = 3

_PAYLOAD = struct.Struct("!BBH")
_RECENT_EVENTS = 8
_STALE_WINDOW_S = 10
"""An event starting at most this long before the newest one seen on its SSRC is a late
retransmission of an event already forgotten, not a new key press; further back than that is
taken as a sender that restarted its timestamps."""


@dataclass(frozen=True)
class TelephoneEvent:
    """One 4-byte RFC 4733 event block (§2.3)."""

    event: int
    end: bool
    volume: int  # 0..63, the power level in -dBm0
    duration: int  # timestamp units since the event's RTP timestamp


@dataclass(frozen=True)
class DigitDetected:
    """A key press, reported once, with what was known when it was reported."""

    digit: str
    timestamp: int  # the event's RTP timestamp
    duration_ms: int  # the duration carried by the packet that reported it


def parse_telephone_event(payload: bytes) -> TelephoneEvent:
    """Decode the first event block; a longer payload's extra bytes are ignored."""
    if len(payload) < EVENT_PAYLOAD_SIZE:
        raise ValueError(f"telephone-event payload too short: {len(payload)} bytes")
    event, flags, duration = _PAYLOAD.unpack_from(payload)
    return TelephoneEvent(event, bool(flags & 0x80), flags & 0x3F, duration)


def encode_telephone_event(event: int, end: bool, volume: int, duration: int) -> bytes:
    """The 4-byte event block (the reserved bit is sent as zero)."""
    if not 0 <= event <= 255:
        raise ValueError(f"event code out of range: {event}")
    if not 0 <= volume <= 63:
        raise ValueError(f"volume out of range (0..63 -dBm0): {volume}")
    if not 0 <= duration <= MAX_DURATION:
        raise ValueError(f"duration out of range: {duration}")
    return _PAYLOAD.pack(event, (0x80 if end else 0) | volume, duration)


def digit_packets(
    sender: RtpSender,
    digit: str,
    duration_ms: int = 100,
    payload_type: int = DEFAULT_PAYLOAD_TYPE,
    volume: int = 10,
) -> list[bytes]:
    """The packet train a phone sends for one key press, in sending order.

    A start packet with the marker bit, an update every 50 ms (same timestamp, growing
    duration), then the end packet three times. The caller paces them 50 ms apart, the three
    end packets together. They go through the stream's `sender`, so they share its SSRC and
    sequence numbers, and its timestamp then moves past the event (RFC 4733 §2.5.1.2).
    """
    code = DIGITS.find(digit)
    if len(digit) != 1 or code < 0:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    rate_per_ms = 8  # telephone-event's clock is 8000 Hz for narrowband streams
    total = duration_ms * rate_per_ms
    if not 0 < total <= MAX_DURATION:
        raise ValueError(f"digit duration out of range: {duration_ms} ms")
    step = UPDATE_INTERVAL_MS * rate_per_ms
    # RFC 4733 §2.3.5: a digit is not a state, so even the first packet has a non-zero duration
    durations = list(range(step, total, step)) or [total]
    packets = [
        sender.packet(
            encode_telephone_event(code, False, volume, duration),
            samples=0,
            marker=index == 0,
            payload_type=payload_type,
        )
        for index, duration in enumerate(durations)
    ]
    end = encode_telephone_event(code, True, volume, total)
    packets += [
        sender.packet(end, samples=0, payload_type=payload_type) for _ in range(END_PACKET_COPIES)
    ]
    sender.skip(total)
    return packets


@dataclass(slots=True)
class _Event:
    """What the decoder remembers of one recent event."""

    code: int
    reported: bool
    ended: bool
    duration: int


class TelephoneEventDecoder:
    """Turns telephone-event packets into one `DigitDetected` per key press.

    Ignored without raising, because a peer's bad packet must never stop the call:
    - truncated payloads and event codes 16..255 (not DTMF keys);
    - a packet with duration 0 and no end bit: RFC 4733 §2.3.5 reserves zero for state events
      and says to ignore it for others. The decoder remembers the event as started, though, so
      a sender that starts with one (SIPp does) is reported on its next packet, even if that
      is already an end packet;
    - END WITHOUT START: an end packet for an event not seen before. It is most often a late
      copy of an event already reported and then forgotten, and a digit that late would arrive
      after the user has moved on anyway;
    - retransmitted, duplicated and reordered packets of a known event, and late packets of
      an older event on the same SSRC.

    Only the last few events are remembered, so memory stays bounded whatever a peer sends.
    """

    def __init__(self, clock_rate: int = 8000) -> None:
        self.clock_rate = clock_rate
        self._events: dict[tuple[int, int], _Event] = {}

    def receive(self, packet: RtpPacket) -> DigitDetected | None:
        """Feed one packet of the telephone-event payload type; a digit on a new key press."""
        payload = packet.payload
        if len(payload) < EVENT_PAYLOAD_SIZE:
            return None
        code, flags, duration = _PAYLOAD.unpack_from(payload)
        if code >= len(DIGITS):
            return None
        end = flags >= 0x80
        key = (packet.ssrc, packet.timestamp)
        known = self._events.get(key)
        if known is None:
            if end or self._is_stale(packet.ssrc, packet.timestamp):
                return None
            known = self._remember(key, code)
            if self._continues_long_event(packet.ssrc, packet.timestamp, code):
                known.reported = True  # the next segment of a key still held (§2.5.1.3)
        elif known.code != code:
            return None  # a different key on a known event's timestamp: corrupt or forged
        if duration > known.duration:
            known.duration = duration
        if end:
            known.ended = True
        if known.reported or duration == 0:
            return None
        known.reported = True
        return DigitDetected(DIGITS[code], packet.timestamp, duration * 1000 // self.clock_rate)

    def _remember(self, key: tuple[int, int], code: int) -> _Event:
        if len(self._events) >= _RECENT_EVENTS:
            del self._events[next(iter(self._events))]  # the oldest: dicts keep insertion order
        event = _Event(code, reported=False, ended=False, duration=0)
        self._events[key] = event
        return event

    def _is_stale(self, ssrc: int, timestamp: int) -> bool:
        window = _STALE_WINDOW_S * self.clock_rate
        return any(
            0 < ts_delta(seen_ts, timestamp) <= window
            for seen_ssrc, seen_ts in self._events
            if seen_ssrc == ssrc
        )

    def _continues_long_event(self, ssrc: int, timestamp: int, code: int) -> bool:
        """True when a key held past 65535 timestamp units goes on under a new timestamp.

        RFC 4733 §2.5.1.3 starts the next segment where the previous one ended, without an end
        bit in between; the previous segment must then have nearly reached the maximum.
        """
        near_full = MAX_DURATION - self.clock_rate  # within a second of the maximum
        for (seen_ssrc, seen_ts), seen in self._events.items():
            if seen_ssrc != ssrc or seen.code != code or seen.ended or seen.duration < near_full:
                continue
            if seen.duration <= ts_delta(timestamp, seen_ts) <= MAX_DURATION:
                return True
        return False
