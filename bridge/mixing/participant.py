"""A participant's media state: where its RTP comes from and goes to, its jitter buffer and flags.

`receive_rtp` is the per-packet hot path: check the source, unpack the header with struct, queue the
frame. No logging, no allocation beyond the payload (no RtpPacket for a plain audio packet).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from struct import error as struct_error

import numpy as np

from bridge.media.codecs import MediaCodec
from bridge.media.dtmf import DtmfState
from bridge.media.mixer import Concealer
from bridge.media.prompt import PromptPlayer
from bridge.media.srtp import SrtpSession
from bridge.media.tones import DBM0_PEAK
from bridge.mixing.stream_state import StreamState
from bridge.mixing.voice import ColumnVoice, VoiceActivity
from bridge.rtp.jitter import JitterBuffer
from bridge.rtp.jitter_columns import ColumnJitter, ColumnLoss
from bridge.rtp.packet import RtpError, RtpSender, is_rtcp, parse_rtp
from bridge.rtp.packet import unpack_header as _unpack_header
from bridge.rtp.stream_loss import StreamLoss
from bridge.rtp.telephone_event import TelephoneEventDecoder

Address = tuple[str, int]
SendFunction = Callable[[bytes, Address], None]


@dataclass
class MediaCounters:
    packets_in: int = 0
    packets_out: int = 0
    bad_packets: int = 0
    wrong_source: int = 0
    other_payload: int = 0
    srtp_rejected: int = 0  # SRTP packets failing authentication or replayed: dropped


VOICE_POWER = (DBM0_PEAK**2 / 2) * 10 ** (-40 / 10)
"""Mean power over which a frame counts as voice: -40 dBm0, well over G.711 idle noise."""


@dataclass(eq=False)
class Participant:
    """One call in a room. `remote` comes from SDP; `latched` is where its RTP really comes from."""

    id: str
    call_key: str
    room: str
    caller: str
    display_name: str
    codec: MediaCodec
    remote: Address
    signalling_host: str
    send: SendFunction
    jitter: JitterBuffer | ColumnJitter  # the latter on a shared port: bridge/mixing/columnar.py
    telephone_event_pt: int | None = None
    muted: bool = False
    deaf: bool = False
    on_hold: bool = False  # remote is sendonly/inactive: not mixed, sent nothing
    held: bool = False  # put on hold by the API: not mixed, hears hold music
    dtmf_enabled: bool = True  # False: digits are reported but trigger no menu action
    volume_db: int = 0  # listening volume, applied to what this participant hears
    latched: Address | None = None
    last_rtp: float = 0.0
    joined_at: float = 0.0  # the loop's clock
    joined_wall: float = 0.0  # wall clock, for people and the API
    sender: RtpSender = field(default_factory=RtpSender)
    concealer: Concealer = field(default_factory=Concealer)
    counters: MediaCounters = field(default_factory=MediaCounters)
    loss: StreamLoss | ColumnLoss = field(default_factory=StreamLoss)  # every payload type
    prompts: PromptPlayer = field(default_factory=PromptPlayer)
    rfc4733: TelephoneEventDecoder = field(default_factory=TelephoneEventDecoder)
    inband: DtmfState | None = None  # the room's detector state, set when the room takes us
    digits: list[tuple[str, str]] = field(default_factory=list)  # (digit, method) not yet taken
    voice: VoiceActivity | ColumnVoice = field(default_factory=lambda: VoiceActivity())
    stream: StreamState | None = None  # codec and rate state of the multi-rate tick
    srtp: SrtpSession | None = None  # SRTP leg: every packet in and out goes through it

    @property
    def inband_dtmf(self) -> bool:
        """In-band detection is for callers who did not negotiate telephone-event."""
        return self.telephone_event_pt is None

    def receive_rtp(self, data: bytes, source: Address, now: float) -> None:
        """Queue one datagram from the participant's RTP socket (symmetric RTP latching).

        The hot path: a plain RTP packet (no CSRC, extension or padding) in the negotiated codec
        is unpacked here and queued with no RtpPacket made; anything else takes `_receive_other`.
        An SRTP leg's packet is authenticated and decrypted first: a forged or replayed one is
        dropped (`counters.srtp_rejected`) before it can latch the source; non-RTP bytes too.
        """
        if self.srtp is not None:
            if not data or data[0] & 0xC0 != 0x80:  # not RTP at all (STUN, noise): no latching
                self.counters.bad_packets += 1
                return
            plain = self.srtp.unprotect(data)
            if plain is None:
                self.counters.srtp_rejected += 1
                return
            data = plain
        if source != self.latched:
            if self.latched is not None or source[0] not in (self.remote[0], self.signalling_host):
                self.counters.wrong_source += 1
                return
            self.latched = source
        try:
            first, second, sequence, timestamp, ssrc = _unpack_header(data)
        except struct_error:
            first = second = -1
        # No RTCP check needed: the codecs' types (0, 8) are not RTCP types (72..79, RFC 5761 §4).
        if first == 0x80 and second & 0x7F == self.codec.payload_type:
            self.counters.packets_in += 1
            self.last_rtp = now
            self.loss.observe(ssrc, sequence)
            self.jitter.push_frame(sequence, timestamp, ssrc, data[12:], now)
            return
        self._receive_other(data, now)

    def receive_late(self, data: bytes, source: Address, now: float, ticks_behind: int) -> None:
        """`receive_rtp` while the mixing clock is `ticks_behind` ticks late (woken late, the
        process reads first, then runs those ticks back to back): the jitter buffer may hold
        that many frames more than its bound for this packet, so the frames of the ticks about
        to run are not trimmed on the way in, and those ticks do not conceal. Its next packet
        on time trims what is still over the bound."""
        jitter = self.jitter
        jitter.max_frames += ticks_behind
        try:
            self.receive_rtp(data, source, now)
        finally:
            jitter.max_frames -= ticks_behind

    def _receive_other(self, data: bytes, now: float) -> None:
        """A datagram off the hot path: RTCP, malformed, other payload types or header fields."""
        if len(data) > 1 and is_rtcp(data):
            return
        try:
            packet = parse_rtp(data)
        except RtpError:
            self.counters.bad_packets += 1
            return
        self.counters.packets_in += 1
        self.last_rtp = now
        self.loss.observe(packet.ssrc, packet.sequence)
        if packet.payload_type != self.codec.payload_type:
            # telephone-event and comfort noise never reach the mix
            if packet.payload_type == self.telephone_event_pt:
                detected = self.rfc4733.receive(packet)
                if detected is not None:
                    self.digits.append((detected.digit, "rfc4733"))
                    if isinstance(self.jitter, ColumnJitter):
                        self.jitter.keyed()
            else:
                self.counters.other_payload += 1
            return
        self.jitter.push(packet, now)

    def next_frame(self, out: np.ndarray) -> None:
        """Fill `out` (160 int16) with this tick's audio: the next frame or its concealment.

        The room does the same for all its members at once (`next_payload`, one batched decode).
        """
        payload = self.next_payload()
        if payload is None:
            out[:] = self.concealer.conceal()
            return
        self.codec.decode_into(payload, out)

    def next_payload(self) -> bytes | None:
        """This tick's encoded frame, or None when it must be concealed (`concealer.fade`).

        No numpy here: the caller decodes the payload, and the concealer only keeps it."""
        payload = self.jitter.pop()
        if payload is not None:  # keep_good's line, inline: once per member per tick
            self.concealer.good_payload(payload, self.codec.decode_into)
        return payload

    def keep_good(self, payload: bytes) -> None:
        """The concealer keeps a frame that played (popped in a batch: `ColumnJitter`)."""
        self.concealer.good_payload(payload, self.codec.decode_into)

    @property
    def destination(self) -> Address:
        return self.latched or self.remote

    def send_payload(self, payload: bytes) -> None:
        remote = self.remote
        if remote[1] == 0:
            return
        self.counters.packets_out += 1
        # positional: the same as packet(payload, payload_type=...), a little cheaper per packet
        codec = self.codec
        packet = self.sender.packet(payload, codec.clock_rate // 50, False, codec.payload_type)
        if self.srtp is not None:
            packet = self.srtp.protect(packet)
        self.send(packet, self.latched or remote)

    def drop_payload(self) -> None:
        """Send nothing this tick, as a lost packet (see `RtpSender.drop`)."""
        self.sender.drop(self.codec.clock_rate // 50)


def select_contributors(
    members: Sequence[Participant],
    loud: Sequence[bool],
    sounding: Sequence[bool],
    talk_changes: list[Participant],
) -> list[int]:
    """Update each member's talking state (`talk_changes` gets who changed) and return the
    members heard in this tick's mix: sounding, and not muted, on hold, held or keying an
    in-band tone. Shared by the 8 kHz and the multi-rate tick."""
    contributors: list[int] = []
    for i, (participant, is_loud, has_sound) in enumerate(
        zip(members, loud, sounding, strict=True)
    ):
        held = participant.held
        if participant.voice.update(is_loud and not held):
            talk_changes.append(participant)
        if has_sound and not (
            participant.muted
            or participant.on_hold
            or held
            or (participant.inband_dtmf and participant.inband.tone_present)  # type: ignore[union-attr]
        ):
            contributors.append(i)
    return contributors
