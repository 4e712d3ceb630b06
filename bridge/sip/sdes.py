"""SDES (RFC 4568): SRTP keys in SDP `a=crypto` lines, and the `rtp.srtp` policy, sans-I/O.

`a=crypto:<tag> <suite> inline:<base64 key||salt>[|<lifetime>][|<MKI>:<length>] [<params>]`.
We answer the first offered line we can use (a suite of `SUITES`, one inline key of the
suite's length, no MKI, no session parameter but WSH) with our own fresh key under the same
tag; an offer whose crypto lines are all unusable gets 488 naming each problem. Our own offers
carry one line per suite, each with its own key.

Policy (`rtp.srtp`): "off" serves RTP/AVP only; "optional" answers RTP/SAVP offers with SRTP
and RTP/AVP offers with plain RTP; "mandatory" answers only RTP/SAVP (488 to plain offers).
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from dataclasses import dataclass

from bridge.media.srtp import MASTER_KEY_BYTES, SUITES, SrtpKeys
from bridge.sip.sdp import MediaDescription, SdpError

PLAIN_PROFILES = ("RTP/AVP", "RTP/AVPF")
SRTP_PROFILES = ("RTP/SAVP", "RTP/SAVPF")
MODES = ("off", "optional", "mandatory")
_CRYPTO_RE = re.compile(r"^(\d{1,9})\s+(\S+)\s+(\S+)(?:\s+(.*))?$")
_LIFETIME_RE = re.compile(r"^(?:2\^\d{1,2}|\d{1,20})$")
_ALLOWED_SESSION_PARAMS = ("WSH=",)  # a replay window size: libsrtp keeps its own


def profiles(mode: str) -> tuple[str, ...]:
    """The m= line profiles an offer may use under `rtp.srtp = mode`."""
    if mode == "mandatory":
        return SRTP_PROFILES
    if mode == "optional":
        return SRTP_PROFILES + PLAIN_PROFILES
    return PLAIN_PROFILES


def is_srtp(proto: str) -> bool:
    return proto.upper() in SRTP_PROFILES


def refusal(audio: list[MediaDescription], mode: str) -> SdpError | None:
    """Why an offer's audio streams do not fit the policy, when that is why none is usable."""
    offered = {m.proto.upper() for m in audio if m.media == "audio" and m.port != 0}
    if mode == "mandatory" and offered and not offered & set(SRTP_PROFILES):
        return SdpError("SRTP is required: offer RTP/SAVP with a=crypto (SDES)", 488)
    if mode == "off" and offered and offered <= set(SRTP_PROFILES):
        return SdpError("SRTP is not enabled here (rtp.srtp = off): offer RTP/AVP", 488)
    return None


@dataclass(frozen=True)
class Crypto:
    """One usable `a=crypto` line."""

    tag: int
    suite: str
    key: bytes

    def line(self) -> str:
        """The attribute value (after `a=`)."""
        return f"crypto:{self.tag} {self.suite} inline:{base64.b64encode(self.key).decode()}"


def parse_crypto(value: str) -> Crypto:
    """One `a=crypto` value (after `crypto:`); SdpError(488) naming what is wrong with it."""
    match = _CRYPTO_RE.match(value.strip())
    if match is None:
        raise SdpError(f"SRTP: malformed a=crypto line {value[:60]!r}", 488)
    tag, suite, key_params, session_params = match.groups()
    if suite not in SUITES:
        raise SdpError(f"SRTP: a=crypto tag {tag} suite {suite[:40]} is not supported", 488)
    if ";" in key_params:
        raise SdpError(f"SRTP: a=crypto tag {tag} has several keys (one inline key only)", 488)
    if not key_params.startswith("inline:"):
        raise SdpError(f"SRTP: a=crypto tag {tag} key method is not inline", 488)
    parts = key_params[len("inline:") :].split("|")
    for extra in parts[1:]:
        if ":" in extra:
            raise SdpError(f"SRTP: a=crypto tag {tag} uses an MKI (not supported)", 488)
        if not _LIFETIME_RE.match(extra):
            raise SdpError(f"SRTP: a=crypto tag {tag} has a bad key lifetime {extra[:20]!r}", 488)
    try:
        key = base64.b64decode(parts[0], validate=True)
    except (binascii.Error, ValueError):
        raise SdpError(f"SRTP: a=crypto tag {tag} key is not base64", 488) from None
    if len(key) != MASTER_KEY_BYTES:
        raise SdpError(
            f"SRTP: a=crypto tag {tag} key is {len(key)} bytes, {suite} needs "
            f"{MASTER_KEY_BYTES} (key and salt)",
            488,
        )
    for param in (session_params or "").split():
        if not param.startswith(_ALLOWED_SESSION_PARAMS):
            raise SdpError(
                f"SRTP: a=crypto tag {tag} session parameter {param[:30]} is not supported", 488
            )
    return Crypto(int(tag), suite, key)


def _crypto_values(media: MediaDescription) -> list[str]:
    return [value or "" for name, value in media.attributes if name == "crypto"]


def answer_crypto(media: MediaDescription, current: SrtpKeys | None = None) -> tuple[SrtpKeys, str]:
    """Our keys and `a=crypto` line for an SRTP stream offered in `media`; 488 when none of
    its crypto lines can be used (each problem named). A re-offer with the `current` suite and
    peer key keeps our key too, so the stream goes on without a new context."""
    problems: list[str] = []
    for value in _crypto_values(media):
        try:
            offered = parse_crypto(value)
        except SdpError as exc:
            problems.append(str(exc).removeprefix("SRTP: "))
            continue
        same = current is not None and (current.suite, current.remote) == (
            offered.suite,
            offered.key,
        )
        key = current.local if same and current else secrets.token_bytes(MASTER_KEY_BYTES)
        ours = Crypto(offered.tag, offered.suite, key)
        return SrtpKeys(offered.suite, local=key, remote=offered.key), ours.line()
    if not problems:
        raise SdpError(f"SRTP: {media.proto} offered without a=crypto (SDES)", 488)
    raise SdpError("SRTP: no usable a=crypto: " + "; ".join(problems), 488)


def offer_cryptos() -> tuple[Crypto, ...]:
    """Our offer's crypto lines: one per suite, each with its own key, tags from 1."""
    return tuple(
        Crypto(tag, suite, secrets.token_bytes(MASTER_KEY_BYTES))
        for tag, suite in enumerate(SUITES, start=1)
    )


def read_answer(media: MediaDescription, offered: tuple[Crypto, ...]) -> SrtpKeys:
    """The keys settled by the peer's answer to our offer: one crypto line naming one of our
    tags with the same suite."""
    by_tag = {crypto.tag: crypto for crypto in offered}
    values = _crypto_values(media)
    if len(values) != 1:
        raise SdpError(f"SRTP: the answer has {len(values)} a=crypto lines, expected 1", 488)
    theirs = parse_crypto(values[0])
    ours = by_tag.get(theirs.tag)
    if ours is None or ours.suite != theirs.suite:
        raise SdpError(f"SRTP: the answer's a=crypto tag {theirs.tag} was not offered", 488)
    return SrtpKeys(ours.suite, local=ours.key, remote=theirs.key)
