"""Per-source limits on new SIP dialogs, what Kamailio's pike does (sans-I/O): a token bucket
per source address for requests that start something (INVITE, REGISTER, OPTIONS, SUBSCRIBE,
MESSAGE... outside a dialog). Requests inside a dialog (a To tag), ACK, CANCEL and responses
are never limited, nor are retransmissions of a request already let through, nor sources on
the allow-list (trunks, a local proxy).

It reads only the raw bytes it needs (the method, the To tag, the Via branch) so that shedding
costs a fraction of parsing: the excess gets a stateless 503 with Retry-After, built by copying
the request's Via/From/To/Call-ID/CSeq lines, or nothing at all (`action = "drop"`)."""

from __future__ import annotations

import ipaddress
import re
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field

MAX_SOURCES = 65_536  # buckets kept at once; the least recently seen go first
MAX_ADMITTED = 16_384  # (source, branch) pairs remembered so retransmissions pass

NEVER_LIMITED = frozenset({b"CANCEL", b"BYE", b"PRACK", b"UPDATE", b"INFO", b"NOTIFY"})
SHED_TAG = b"shed-"  # the To tag of our stateless 503s: their ACKs are absorbed here
_HEADER = re.compile(
    rb"^(via|v|from|f|to|t|call-id|i|cseq)[ \t]*:[ \t]*(.*?)[ \t]*\r?$",
    re.IGNORECASE | re.MULTILINE,
)
_TAG = re.compile(rb";\s*tag\s*=", re.IGNORECASE)
_BRANCH = re.compile(rb";\s*branch\s*=\s*([^;,\s]+)", re.IGNORECASE)
_CANONICAL = {b"v": b"Via", b"f": b"From", b"t": b"To", b"i": b"Call-ID"}


@dataclass(frozen=True)
class FloodRules:
    rate: float = 10.0  # new dialogs per second per source, sustained; 0 = no limit
    burst: int = 50  # how many may come at once
    action: str = "503"  # "503" (with Retry-After) or "drop"
    retry_after_s: int = 5
    allow: tuple[str, ...] = ("127.0.0.0/8", "::1/128")  # networks never limited


@dataclass
class FloodCounters:
    limited: int = 0  # requests refused (503) or dropped
    sources_limited: int = 0  # times a source went from allowed to limited


@dataclass
class _Bucket:
    tokens: float
    stamp: float
    limited: bool = False


@dataclass
class FloodGuard:
    rules: FloodRules
    counters: FloodCounters = field(default_factory=FloodCounters)

    def __post_init__(self) -> None:
        self._allow = [ipaddress.ip_network(net, strict=False) for net in self.rules.allow]
        self._allowed: dict[str, bool] = {}
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._admitted: OrderedDict[tuple[str, bytes], None] = OrderedDict()

    def check(self, data: bytes, source: str, now: float) -> bytes | None:
        """None: hand the message on. Otherwise it is over the limit: the bytes to answer with
        (a 503), or b"" to drop it."""
        if self.rules.rate <= 0 or self._is_allowed(source):
            return None
        space = data.find(b" ")
        method = data[:space] if space > 0 else b""
        if not method or method == b"SIP/2.0" or method in NEVER_LIMITED:
            return None
        end = data.find(b"\r\n\r\n")
        headers = _HEADER.findall(data if end < 0 else data[:end])
        if method == b"ACK":  # never limited; the ACK of one of our 503s goes no further
            shed = any(name.lower() in (b"to", b"t") and b";tag=" + SHED_TAG in value
                       for name, value in headers)  # fmt: skip
            return b"" if shed else None
        if any(name.lower() in (b"to", b"t") and _TAG.search(value) for name, value in headers):
            return None  # inside a dialog
        branch = next((m.group(1) for n, v in headers if n.lower() in (b"via", b"v")
                       if (m := _BRANCH.search(v))), b"")  # fmt: skip
        if branch and (source, branch) in self._admitted:
            return None  # a retransmission of a request we let through
        if self._take(source, now):
            if branch:
                self._remember(source, branch)
            return None
        self.counters.limited += 1
        names = {name.lower() for name, _ in headers}
        if self.rules.action == "drop" or not names >= {b"cseq"} or not names & {b"via", b"v"}:
            return b""  # asked to drop, or too broken to answer
        return self._refusal(headers)

    def _is_allowed(self, source: str) -> bool:
        allowed = self._allowed.get(source)
        if allowed is None:
            try:
                address = ipaddress.ip_address(source)
                allowed = any(address in net for net in self._allow)
            except ValueError:
                allowed = False
            if len(self._allowed) >= MAX_SOURCES:
                self._allowed.clear()
            self._allowed[source] = allowed
        return allowed

    def _take(self, source: str, now: float) -> bool:
        bucket = self._buckets.get(source)
        if bucket is None:
            if len(self._buckets) >= MAX_SOURCES:
                self._buckets.popitem(last=False)
            bucket = self._buckets[source] = _Bucket(float(self.rules.burst), now)
        else:
            self._buckets.move_to_end(source)
            elapsed = max(0.0, now - bucket.stamp)
            bucket.tokens = min(float(self.rules.burst), bucket.tokens + elapsed * self.rules.rate)
            bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            bucket.limited = False
            return True
        if not bucket.limited:
            bucket.limited = True
            self.counters.sources_limited += 1
        return False

    def _remember(self, source: str, branch: bytes) -> None:
        self._admitted[(source, branch)] = None
        if len(self._admitted) > MAX_ADMITTED:
            self._admitted.popitem(last=False)

    def _refusal(self, headers: list[tuple[bytes, bytes]]) -> bytes:
        lines = [b"SIP/2.0 503 Service Unavailable"]
        for name, value in headers:
            canonical = _CANONICAL.get(name.lower(), name)
            if canonical.lower() in (b"to", b"t") and not _TAG.search(value):
                value += b";tag=" + SHED_TAG + secrets.token_hex(4).encode()
            lines.append(canonical + b": " + value)
        lines += [f"Retry-After: {self.rules.retry_after_s}".encode(), b"Content-Length: 0"]
        return b"\r\n".join(lines) + b"\r\n\r\n"
