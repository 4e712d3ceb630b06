"""SRTP (RFC 3711) at a participant's packet boundary, through libsrtp (pylibsrtp).

`SrtpKeys` is what SDES (RFC 4568, `bridge/sip/sdes.py`) settled: the suite and both master
keys. It is plain data: it travels in `NegotiatedMedia` and in a media worker's hand-over.
`SrtpSession` wraps the two libsrtp contexts (ours for sending, the peer's for receiving); they
cannot be pickled, so they are made on first use in whichever process the participant lives in
and dropped when it is pickled. Whatever reads or writes the socket (in-process, a worker, a
batched I/O path) calls only `protect(packet) -> bytes` and `unprotect(packet) -> bytes | None`.

A new context after a hand-over starts its rollover counter at 0: a leg that spent more than
65,536 packets (about 22 minutes) in the lobby before joining would be out of step. Keys are
per leg, so nothing else is shared between participants.
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


@dataclass(eq=False)
class SrtpSession:
    """Both directions of one leg's SRTP; libsrtp's contexts are made where they are used."""

    keys: SrtpKeys
    counters: SrtpCounters = field(default_factory=SrtpCounters)
    _tx: pylibsrtp.Session | None = None
    _rx: pylibsrtp.Session | None = None

    def __getstate__(self) -> dict[str, object]:
        # The contexts stay behind: the receiving process builds its own from the keys.
        return {"keys": self.keys, "counters": self.counters, "_tx": None, "_rx": None}

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

    def protect(self, packet: bytes) -> bytes:
        """An RTP packet as SRTP: payload encrypted, authentication tag appended."""
        if self._tx is None:
            self._tx = self._context(outbound=True)
        self.counters.protected += 1
        return self._tx.protect(packet)

    def unprotect(self, packet: bytes) -> bytes | None:
        """The RTP (or, multiplexed on the port, RTCP) packet inside an SRTP (SRTCP) one;
        None (counted) for a forged, replayed or damaged one."""
        if self._rx is None:
            self._rx = self._context(outbound=False)
        if len(packet) < 12:
            self.counters.rejected += 1
            return None
        try:
            if 192 <= packet[1] <= 223:  # RTCP packet types 192..223 (RFC 5761 §4)
                plain = self._rx.unprotect_rtcp(packet)
            else:
                plain = self._rx.unprotect(packet)
        except pylibsrtp.Error:
            self.counters.rejected += 1
            return None
        self.counters.unprotected += 1
        return plain
