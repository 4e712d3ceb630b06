"""SRTP (RFC 3711) at a participant's packet boundary, through libsrtp (pylibsrtp).

`SrtpKeys` is what SDES (RFC 4568, `bridge/sip/sdes.py`) settled: the suite and both master
keys. It is plain data: it travels in `NegotiatedMedia` and in a media worker's hand-over.
`SrtpSession` wraps the two libsrtp contexts (ours for sending, the peer's for receiving); they
cannot be pickled, so they are made on first use in whichever process the participant lives in
and dropped when it is pickled. Whatever reads or writes the socket (in-process, a worker, a
batched I/O path) calls only `protect(packet) -> bytes` and `unprotect(packet) -> bytes | None`.

A new context starts its rollover counter (RFC 3711 §3.3.1) at 0, and pylibsrtp cannot set it:
after a hand-over of a leg whose sequence numbers have wrapped (more than 65,536 packets, about
22 minutes), each direction's new context is walked up to where the stream is (`StreamPosition`)
with a few throw-away packets, so both ends still agree on the packet index.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pylibsrtp

SUITE_80 = "AES_CM_128_HMAC_SHA1_80"
SUITE_32 = "AES_CM_128_HMAC_SHA1_32"
MASTER_KEY_BYTES = 30  # 16 bytes key + 14 bytes salt, both suites
_PROFILES = {
    SUITE_80: pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    SUITE_32: pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
}
SUITES = tuple(_PROFILES)
"""The crypto suites we speak, in the order we offer them."""


@dataclass(frozen=True)
class SrtpKeys:
    """One leg's SRTP: the suite and the master key||salt of each direction."""

    suite: str
    local: bytes  # we protect what we send with this (the key in our a=crypto)
    remote: bytes  # the peer protects what it sends with this (the key in its a=crypto)

    def __post_init__(self) -> None:
        if self.suite not in _PROFILES:
            raise ValueError(f"unsupported SRTP suite {self.suite!r}")
        if len(self.local) != MASTER_KEY_BYTES or len(self.remote) != MASTER_KEY_BYTES:
            raise ValueError(f"SRTP master keys are {MASTER_KEY_BYTES} bytes")

    def __repr__(self) -> str:  # never log key material
        return f"SrtpKeys({self.suite})"


@dataclass
class SrtpCounters:
    protected: int = 0
    unprotected: int = 0
    rejected: int = 0  # failed authentication, replayed, or too short: dropped


_STEP = 30_000  # packet indices between throw-away packets: under 2^15, as libsrtp estimates


@dataclass
class StreamPosition:
    """One direction's stream as SRTP counts it: SSRC, rollover counter, last sequence number."""

    ssrc: int = -1
    roc: int = 0
    seq: int = 0

    def advance(self, packet: bytes) -> None:
        ssrc = int.from_bytes(packet[8:12], "big")
        seq = (packet[2] << 8) | packet[3]
        if ssrc != self.ssrc:
            self.ssrc, self.roc, self.seq = ssrc, 0, seq
        elif (seq - self.seq) & 0xFFFF < 0x8000:  # newer, modulo 2^16
            if seq < self.seq:
                self.roc += 1
            self.seq = seq

    def walk(self) -> list[bytes]:
        """Throw-away RTP packets that bring a new context from index 0 to this position."""
        target = (self.roc << 16) | self.seq
        ssrc = self.ssrc.to_bytes(4, "big")
        return [
            bytes([0x80, 0]) + (index & 0xFFFF).to_bytes(2, "big") + bytes(4) + ssrc + bytes(4)
            for index in [*range(0, target, _STEP), target]
        ]


@dataclass(eq=False)
class SrtpSession:
    """Both directions of one leg's SRTP; libsrtp's contexts are made where they are used."""

    keys: SrtpKeys
    counters: SrtpCounters = field(default_factory=SrtpCounters)
    sent: StreamPosition = field(default_factory=StreamPosition)
    received: StreamPosition = field(default_factory=StreamPosition)
    _tx: pylibsrtp.Session | None = None
    _rx: pylibsrtp.Session | None = None

    def __getstate__(self) -> dict[str, object]:
        # The contexts stay behind: the receiving process builds its own from the keys.
        return {**self.__dict__, "_tx": None, "_rx": None}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)

    def _context(self, outbound: bool) -> pylibsrtp.Session:
        keys = self.keys
        policy = pylibsrtp.Policy(
            key=keys.local if outbound else keys.remote,
            ssrc_type=(
                pylibsrtp.Policy.SSRC_ANY_OUTBOUND
                if outbound
                else pylibsrtp.Policy.SSRC_ANY_INBOUND
            ),
            srtp_profile=_PROFILES[keys.suite],
        )
        return pylibsrtp.Session(policy)

    def _new_tx(self) -> pylibsrtp.Session:
        tx = self._context(outbound=True)
        if self.sent.roc:  # a hand-over after the sequence numbers wrapped
            for packet in self.sent.walk():
                tx.protect(packet)
        return tx

    def _new_rx(self) -> pylibsrtp.Session:
        rx = self._context(outbound=False)
        if self.received.roc:  # walk it with packets protected by the peer's own key
            peer = pylibsrtp.Session(
                pylibsrtp.Policy(
                    key=self.keys.remote,
                    ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                    srtp_profile=_PROFILES[self.keys.suite],
                )
            )
            for packet in self.received.walk():
                rx.unprotect(peer.protect(packet))
        return rx

    def protect(self, packet: bytes) -> bytes:
        """An RTP packet as SRTP: payload encrypted, authentication tag appended."""
        if self._tx is None:
            self._tx = self._new_tx()
        self.counters.protected += 1
        self.sent.advance(packet)
        return self._tx.protect(packet)

    def unprotect(self, packet: bytes) -> bytes | None:
        """The RTP (or, multiplexed on the port, RTCP) packet inside an SRTP (SRTCP) one;
        None (counted) for a forged, replayed or damaged one."""
        if self._rx is None:
            self._rx = self._new_rx()
        if len(packet) < 12:
            self.counters.rejected += 1
            return None
        try:
            if 192 <= packet[1] <= 223:  # RTCP packet types 192..223 (RFC 5761 §4)
                return self._rx.unprotect_rtcp(packet)
            plain = self._rx.unprotect(packet)
        except pylibsrtp.Error:
            self.counters.rejected += 1
            return None
        self.counters.unprotected += 1
        self.received.advance(plain)
        return plain
