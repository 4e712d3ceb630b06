"""SIP digest authentication for the requests we send (RFC 3261 §22, RFC 7616, RFC 8760).

SIP trunks answer an INVITE or BYE with 401 (WWW-Authenticate) or 407 (Proxy-Authenticate); the
UAC adds Authorization or Proxy-Authorization, increments CSeq and resends. sipmessage 0.7.1 has
auth header types, but it splits parameters on every comma (breaking quoted values such as
``qop="auth,auth-int"``), keeps parameter names case-sensitive and reads only one header, so this
module parses the headers itself. Like the rest of ``bridge.sip`` it never touches a socket or a
clock; the only side effect is drawing random cnonces from ``secrets``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from sipmessage import Response

DIGEST = "digest"
_HASHES = {"MD5": "md5", "SHA-256": "sha256"}  # RFC 8760 names -> hashlib names
# Canonical spellings: algorithm names compare case-insensitively (RFC 7616 §3.3).
_ALGORITHMS = {name.lower(): name for base in _HASHES for name in (base, f"{base}-sess")}
_STRENGTH = {"MD5": 0, "SHA-256": 1}
_MAX_NC = 0xFFFFFFFF

_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_FOLD = re.compile(r"\r?\n[ \t]*")
_ELEMENT = re.compile(rf'(?:[^",]|{_QUOTED})*', re.S)
_PARAM = re.compile(rf'^({_TOKEN})\s*=\s*({_QUOTED}|[^\s",]*)$', re.S)
_SCHEME = re.compile(rf"^({_TOKEN})(?:\s+(.*))?$", re.S)
_QUOTED_PAIR = re.compile(r"\\(.)", re.S)
_NC = re.compile(r"^[0-9A-Fa-f]{8}$")


class AuthError(ValueError):
    """A challenge or credentials we cannot parse or cannot answer; the message says why."""


# -- header grammar ------------------------------------------------------------------------------


def _elements(value: str) -> list[str]:
    """Split on the commas outside quoted strings; empty list elements are dropped (RFC 7230)."""
    value = _FOLD.sub(" ", value)
    items: list[str] = []
    pos = 0
    while True:
        end = _ELEMENT.match(value, pos).end()  # type: ignore[union-attr]  # always matches
        if end < len(value) and value[end] != ",":
            raise AuthError(f"unterminated quoted string in {value!r}")
        items.append(value[pos:end].strip())
        if end >= len(value):
            return [item for item in items if item]
        pos = end + 1


def _split_challenges(value: str) -> list[tuple[str, list[str]]]:
    """Group list elements into (scheme, raw auth-params); one header may hold several schemes."""
    found: list[tuple[str, list[str]]] = []
    for element in _elements(value):
        if _PARAM.match(element) is None and (scheme := _SCHEME.match(element)) is not None:
            found.append((scheme.group(1), [scheme.group(2)] if scheme.group(2) else []))
        elif found:
            found[-1][1].append(element)
        else:
            raise AuthError(f"expected an authentication scheme before {element!r}")
    if not found:
        raise AuthError("empty authentication header")
    return found


def _unquote(raw: str) -> str:
    if raw.startswith('"'):
        return _QUOTED_PAIR.sub(r"\1", raw[1:-1])
    return raw


def _params(elements: Iterable[str]) -> dict[str, str]:
    """Auth-params by lower-cased name; strict, since only Digest parameters reach here."""
    params: dict[str, str] = {}
    for element in elements:
        match = _PARAM.match(element)
        if match is None:
            raise AuthError(f"malformed digest parameter {element!r}")
        name = match.group(1).lower()
        if name in params:
            raise AuthError(f"duplicate digest parameter {name!r}")
        params[name] = _unquote(match.group(2))
    return params


def _digest_params(value: str) -> dict[str, str]:
    """The parameters of a header value holding exactly one Digest challenge or credentials."""
    found = _split_challenges(value)
    if len(found) != 1:
        raise AuthError(f"expected one Digest value, found {len(found)} schemes")
    scheme, elements = found[0]
    if scheme.lower() != DIGEST:
        raise AuthError(f"unsupported authentication scheme {scheme!r}: only Digest")
    return _params(elements)


def _require(params: Mapping[str, str], names: Iterable[str], what: str) -> None:
    missing = [name for name in names if name not in params]
    if missing:
        raise AuthError(f"{what} lacks {', '.join(missing)}")


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _canonical_algorithm(raw: str) -> str:
    return _ALGORITHMS.get(raw.lower(), raw)


# -- challenges and credentials ------------------------------------------------------------------


@dataclass(frozen=True)
class Challenge:
    """One Digest challenge from a 401 (``proxy=False``) or 407 (``proxy=True``)."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()  # empty: RFC 2069 compatibility, no cnonce/nc
    opaque: str | None = None
    stale: bool = False
    proxy: bool = False

    @classmethod
    def parse(cls, header_value: str, proxy: bool) -> Challenge:
        """Parse one ``Digest ...`` WWW-Authenticate or Proxy-Authenticate value."""
        return cls._from_params(_digest_params(header_value), proxy)

    @classmethod
    def _from_params(cls, params: Mapping[str, str], proxy: bool) -> Challenge:
        _require(params, ("realm", "nonce"), "Digest challenge")
        qop = tuple(q.strip().lower() for q in params.get("qop", "").split(",") if q.strip())
        return cls(
            realm=params["realm"],
            nonce=params["nonce"],
            algorithm=_canonical_algorithm(params.get("algorithm", "MD5")),
            qop=qop,
            opaque=params.get("opaque"),
            stale=params.get("stale", "").lower() == "true",
            proxy=proxy,
        )

    @property
    def header_name(self) -> str:
        """The header that carries our answer (RFC 3261 §22.2 / §22.3)."""
        return "Proxy-Authorization" if self.proxy else "Authorization"

    @property
    def problem(self) -> str | None:
        """Why we cannot answer this challenge, or None when we can."""
        if _base(self.algorithm) not in _HASHES:
            return f"unsupported digest algorithm {self.algorithm!r}"
        if self.qop and "auth" not in self.qop:
            return f"unsupported qop {','.join(self.qop)!r}: only auth"
        if self.algorithm.endswith("-sess") and not self.qop:
            return f"{self.algorithm} needs qop (the cnonce enters the session key)"
        return None


@dataclass(frozen=True)
class Credentials:
    """What we answer with; a set ``realm`` restricts them to that realm's challenges."""

    username: str
    password: str = field(repr=False)
    realm: str | None = None

    def fits(self, challenge: Challenge) -> bool:
        return self.realm is None or self.realm == challenge.realm


def challenges_from(response: Response) -> list[Challenge]:
    """Every Digest challenge of a 401 or 407, in header order; other schemes are skipped."""
    if response.code not in (401, 407):
        raise AuthError(f"a {response.code} response carries no challenge")
    proxy = response.code == 407
    name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
    return [
        Challenge._from_params(_params(elements), proxy)
        for value in response.headers.getlist(name)
        for scheme, elements in _split_challenges(value)
        if scheme.lower() == DIGEST
    ]


def pick(challenges: Iterable[Challenge]) -> Challenge:
    """The strongest challenge we can answer: SHA-256 over MD5, then qop=auth over none.

    RFC 8760: a UAC offered several algorithms uses the strongest it supports; ties keep
    the server's order.
    """
    offered = list(challenges)
    usable = [challenge for challenge in offered if challenge.problem is None]
    if not usable:
        reasons = "; ".join(sorted({str(c.problem) for c in offered})) or "no Digest challenge"
        raise AuthError(f"no challenge we can answer: {reasons}")
    return max(usable, key=lambda c: (_STRENGTH[_base(c.algorithm)], bool(c.qop)))


# -- hashing -------------------------------------------------------------------------------------


def _base(algorithm: str) -> str:
    return algorithm.removesuffix("-sess")


def _hasher(algorithm: str) -> Callable[[str], str]:
    name = _HASHES[_base(algorithm)]
    return lambda text: hashlib.new(name, text.encode()).hexdigest()


@dataclass(frozen=True)
class _Inputs:
    """Everything the response hash covers (RFC 7616 §3.4.1-3.4.3)."""

    algorithm: str
    username: str
    realm: str
    password: str = field(repr=False)
    method: str
    uri: str
    nonce: str
    qop: str | None = None
    nc: str = ""
    cnonce: str = ""

    def response(self) -> str:
        h = _hasher(self.algorithm)
        ha1 = h(f"{self.username}:{self.realm}:{self.password}")
        if self.algorithm.endswith("-sess"):
            ha1 = h(f"{ha1}:{self.nonce}:{self.cnonce}")
        ha2 = h(f"{self.method}:{self.uri}")
        if self.qop is None:
            return h(f"{ha1}:{self.nonce}:{ha2}")
        return h(f"{ha1}:{self.nonce}:{self.nc}:{self.cnonce}:{self.qop}:{ha2}")


def authorization(
    challenge: Challenge,
    credentials: Credentials,
    method: str,
    uri: str,
    *,
    nc: int = 1,
    cnonce: str | None = None,
) -> tuple[str, str]:
    """The (header name, value) answering ``challenge`` for a request ``method`` to ``uri``."""
    if challenge.problem is not None:
        raise AuthError(challenge.problem)
    if not credentials.fits(challenge):
        raise AuthError(f"credentials are for realm {credentials.realm!r}, not {challenge.realm!r}")
    if not 1 <= nc <= _MAX_NC:
        raise AuthError(f"nonce count {nc} out of range")
    qop = "auth" if challenge.qop else None
    if qop is not None and cnonce is None:
        cnonce = secrets.token_hex(8)
    inputs = _Inputs(
        algorithm=challenge.algorithm,
        username=credentials.username,
        realm=challenge.realm,
        password=credentials.password,
        method=method,
        uri=uri,
        nonce=challenge.nonce,
        qop=qop,
        nc=f"{nc:08x}" if qop else "",
        cnonce=(cnonce or "") if qop else "",
    )
    return challenge.header_name, _credentials_value(inputs, challenge.opaque)


def _credentials_value(inputs: _Inputs, opaque: str | None) -> str:
    parts = [
        f"username={_quote(inputs.username)}",
        f"realm={_quote(inputs.realm)}",
        f"nonce={_quote(inputs.nonce)}",
        f"uri={_quote(inputs.uri)}",
        f"response={_quote(inputs.response())}",
        f"algorithm={inputs.algorithm}",
    ]
    if inputs.qop is not None:
        parts += [f"cnonce={_quote(inputs.cnonce)}", f"qop={inputs.qop}", f"nc={inputs.nc}"]
    if opaque is not None:
        parts.append(f"opaque={_quote(opaque)}")
    return "Digest " + ", ".join(parts)


def verify(header_value: str, method: str, password: str) -> bool:
    """Server-side check of an Authorization value, for tests that play the trunk.

    Only the hash is checked (not nonce freshness, nc replay or that ``uri`` matches the
    Request-URI). Raises AuthError on a malformed or unsupported value; False means a wrong hash.
    """
    params = _digest_params(header_value)
    _require(params, ("username", "realm", "nonce", "uri", "response"), "Digest credentials")
    algorithm = _canonical_algorithm(params.get("algorithm", "MD5"))
    if _base(algorithm) not in _HASHES:
        raise AuthError(f"unsupported digest algorithm {algorithm!r}")
    qop = params["qop"].lower() if "qop" in params else None
    if qop not in (None, "auth"):
        raise AuthError(f"unsupported qop {qop!r}: only auth")
    if qop is not None:
        _require(params, ("cnonce", "nc"), "Digest credentials with qop")
        if not _NC.match(params["nc"]):
            raise AuthError(f"nonce count {params['nc']!r} is not 8 hex digits")
    expected = _Inputs(
        algorithm=algorithm,
        username=params["username"],
        realm=params["realm"],
        password=password,
        method=method,
        uri=params["uri"],
        nonce=params["nonce"],
        qop=qop,
        nc=params.get("nc", ""),
        cnonce=params.get("cnonce", ""),
    ).response()
    return hmac.compare_digest(expected.encode(), params["response"].lower().encode())


# -- per-call state ------------------------------------------------------------------------------


class DigestSession:
    """Answers the challenges of one call or dialog, remembering the nonce and its count.

    The caller resends a challenged request with the returned header, the same Call-ID and
    CSeq + 1 (RFC 3261 §8.1.3.5); that is how a challenge to the retry itself is recognised.
    Such a challenge means the credentials were refused, unless it says ``stale=true`` (RFC 7616
    §3.3) or comes from another realm or the other kind of server (a proxy after the UAS or back).
    A challenge to a new request that reuses the nonce is answered with the next nonce count.
    """

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        self.challenge: Challenge | None = None
        self.nc = 0
        self._cnonce = ""
        self._retry: tuple[str, int, str] | None = None  # (Call-ID, CSeq, method) we resend

    def respond(self, response: Response, method: str, uri: str) -> tuple[str, str] | None:
        """The header for the retried request, or None to give up and fail the request."""
        try:
            challenge = pick(c for c in challenges_from(response) if self.credentials.fits(c))
        except AuthError:
            return None
        if self._refused(response, challenge):
            return None
        self._adopt(challenge)
        self._retry = (response.call_id, response.cseq.sequence + 1, response.cseq.method)
        return authorization(
            challenge, self.credentials, method, uri, nc=self.nc, cnonce=self._cnonce
        )

    def _refused(self, response: Response, challenge: Challenge) -> bool:
        answered = (response.call_id, response.cseq.sequence, response.cseq.method) == self._retry
        return answered and self._same_server(challenge) and not challenge.stale

    def _same_server(self, challenge: Challenge) -> bool:
        last = self.challenge
        return last is not None and (last.proxy, last.realm) == (challenge.proxy, challenge.realm)

    def _adopt(self, challenge: Challenge) -> None:
        """Count on with a known nonce; a new nonce restarts at 1 with a fresh cnonce."""
        last = self.challenge
        if last is not None and self._same_server(challenge) and challenge.nonce == last.nonce:
            self.nc += 1
        else:
            self.nc = 1
            self._cnonce = secrets.token_hex(8)
        self.challenge = challenge
