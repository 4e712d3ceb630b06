"""Who may call in (sans-I/O): with `sip.allow_guests` false, only sources in a [[peer]]'s
networks, or callers proving a [[peer]]'s digest credentials, reach admission. Anyone else gets
a 401 with one challenge per algorithm of `sip.digest_algorithms` (SHA-256, then MD5: RFC
8760), or 403 when no peer has credentials or the credentials are wrong. Nonces are stateless
(a time stamp and its HMAC under a per-process secret), valid for NONCE_TTL_S; a stale one is
challenged again with `stale=true`. The Authorization's `uri` is not compared with the
Request-URI."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sipmessage import Request

from bridge.config import PeerDefinition
from bridge.control_port import Refusal
from bridge.sip.auth import AuthError, verify

NONCE_TTL_S = 300
_USERNAME = re.compile(r'username\s*=\s*"([^"]*)"', re.IGNORECASE)
_REALM = re.compile(r'realm\s*=\s*"([^"]*)"', re.IGNORECASE)
_NONCE = re.compile(r'(?<![A-Za-z])nonce\s*=\s*"([^"]*)"', re.IGNORECASE)


@dataclass
class CallIn:
    peers: Sequence[PeerDefinition]
    allow_guests: bool
    realm: str
    algorithms: Sequence[str] = ("SHA-256", "MD5")
    secret: bytes = b""

    def __post_init__(self) -> None:
        self.secret = self.secret or secrets.token_bytes(32)
        self._networks = [
            ipaddress.ip_network(net, strict=False) for p in self.peers for net in p.networks
        ]
        self._users = {p.username: p.password for p in self.peers if p.username}

    def refusal(self, source: str, invite: Request, now: float) -> Refusal | None:
        """None: the caller may go on to admission; else how to turn it away."""
        if self.allow_guests or self._from_peer_network(source):
            return None
        if not self._users:
            return Refusal(403, "Guests not allowed")
        answer = invite.headers.get("Authorization")
        if answer is None:
            return self._challenge(now)
        user, realm, nonce = (_first(p, answer) for p in (_USERNAME, _REALM, _NONCE))
        password = self._users.get(user)
        if password is None or realm != self.realm:
            return Refusal(403, "Unknown credentials")
        try:
            good = verify(answer, invite.method, password)
        except AuthError:
            return Refusal(403, "Unreadable credentials")
        if not good:
            return Refusal(403, "Wrong credentials")
        if not self._fresh(nonce, now):
            return self._challenge(now, stale=True)
        return None

    def _from_peer_network(self, source: str) -> bool:
        try:
            address = ipaddress.ip_address(source)
        except ValueError:
            return False
        return any(address in net for net in self._networks)

    def _nonce(self, now: float) -> str:
        stamp = f"{int(now):x}"
        return f"{stamp}.{hmac.new(self.secret, stamp.encode(), hashlib.sha256).hexdigest()[:32]}"

    def _fresh(self, nonce: str, now: float) -> bool:
        stamp, _, _mac = nonce.partition(".")
        try:
            issued = int(stamp, 16)
        except ValueError:
            return False
        return hmac.compare_digest(nonce, self._nonce(issued)) and 0 <= now - issued <= NONCE_TTL_S

    def _challenge(self, now: float, stale: bool = False) -> Refusal:
        nonce = self._nonce(now)
        extra = ", stale=true" if stale else ""
        headers = tuple(
            ("WWW-Authenticate",
             f'Digest realm="{self.realm}", nonce="{nonce}", algorithm={algorithm}, '
             f'qop="auth"{extra}')
            for algorithm in self.algorithms
        )  # fmt: skip
        return Refusal(401, "Unauthorized", headers)


def _first(pattern: re.Pattern[str], text: str) -> str:
    match = pattern.search(text)
    return match.group(1) if match else ""
