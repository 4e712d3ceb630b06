"""Registration with a trunk (RFC 3261 §10, outbound REGISTER), sans-I/O.

Carriers that only accept calls from a registered endpoint get a REGISTER for the trunk
account: digest-challenged (401/407) like any request, refreshed before the binding expires,
retried after a failure, removed (Expires: 0) when the bridge stops. `Registration` holds one
binding's state and builds its requests; the UA core sends them in client transactions, feeds
the final responses back and asks `due(now)` from its timer.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from sipmessage import URI, Address, Request, Response, Via

from bridge.sip.auth import Credentials, DigestSession
from bridge.sip.dialog import format_address
from bridge.sip.message import new_call_id, new_tag
from bridge.sip.transaction import Peer

RETRY_AFTER_FAILURE_S = 30.0
REFRESH_MARGIN_S = 60.0  # re-register this long before the binding expires (half for short ones)


class RegistrationState(enum.Enum):
    REGISTERING = "registering"
    REGISTERED = "registered"
    FAILED = "failed"  # retried after RETRY_AFTER_FAILURE_S
    UNREGISTERED = "unregistered"


@dataclass(frozen=True)
class RegistrationConfig:
    """One account at a registrar: `aor` (sip:user@domain) bound to our `contact`."""

    registrar: Peer
    aor: URI
    contact: Address
    credentials: Credentials | None = None
    expires: int = 600
    user_agent: str = "confbridge/0.1"


@dataclass
class Registration:
    config: RegistrationConfig
    state: RegistrationState = RegistrationState.UNREGISTERED
    call_id: str = ""
    local_tag: str = field(default_factory=new_tag)
    cseq: int = 0
    next_at: float | None = None  # when to send the next REGISTER (refresh or retry)
    expires_at: float | None = None  # the binding's end, while registered
    status: int = 0  # the last final response's status
    reason: str = ""
    auth: DigestSession | None = None
    removing: bool = False  # the last REGISTER asked for Expires: 0

    def __post_init__(self) -> None:
        self.call_id = self.call_id or new_call_id(self.config.contact.uri.host or "bridge")
        if self.config.credentials is not None:
            self.auth = DigestSession(self.config.credentials)

    def request(
        self, via: Via, expires: int | None = None, header: tuple[str, str] | None = None
    ) -> Request:
        """The next REGISTER (same Call-ID, CSeq + 1: §10.2.4), with credentials when given."""
        self.cseq += 1
        self.removing = expires == 0
        aor = self.config.aor
        request = Request(method="REGISTER", uri=URI(scheme="sip", host=aor.host, port=aor.port))
        request.headers.add("Via", str(via))
        request.headers.add("Max-Forwards", "70")
        request.headers.add("From", format_address(Address(uri=aor), self.local_tag))
        request.headers.add("To", format_address(Address(uri=aor)))
        request.headers.add("Call-ID", self.call_id)
        request.headers.add("CSeq", f"{self.cseq} REGISTER")
        request.headers.add("Contact", format_address(self.config.contact))
        request.headers.add("Expires", str(self.config.expires if expires is None else expires))
        request.headers.add("User-Agent", self.config.user_agent)
        if header is not None:
            request.headers.add(*header)
        return request

    def challenged(self, response: Response, request: Request) -> tuple[str, str] | None:
        """The Authorization for the retry of a 401/407, or None when we cannot answer it."""
        if self.auth is None:
            return None
        return self.auth.respond(response, "REGISTER", str(request.uri))

    def answered(self, response: Response, now: float) -> None:
        """A final response other than a challenge we answer: registered until it expires,
        or failed (retried later)."""
        self.status, self.reason = response.code, response.phrase
        if 200 <= response.code < 300 and self.removing:
            self.state, self.next_at, self.expires_at = RegistrationState.UNREGISTERED, None, None
        elif 200 <= response.code < 300:
            expires = granted_expires(response, self.config.contact.uri, self.config.expires)
            self.state = RegistrationState.REGISTERED
            self.expires_at = now + expires
            self.next_at = now + max(expires / 2, expires - REFRESH_MARGIN_S)
        else:
            self.failed(response.code, response.phrase, now)

    def failed(self, status: int, reason: str, now: float) -> None:
        self.status, self.reason = status, reason
        self.state = RegistrationState.FAILED
        self.next_at = now + RETRY_AFTER_FAILURE_S
        self.expires_at = None


def granted_expires(response: Response, contact: URI, asked: int) -> int:
    """The binding time the registrar granted our contact (§10.2.4): the contact's expires
    parameter, else the Expires header, else what we asked."""
    ours = (contact.host or "", contact.port)
    try:
        contacts = response.contact
    except ValueError:
        contacts = []
    for address in contacts:
        if (address.uri.host or "", address.uri.port) == ours:
            value = address.parameters.get("expires")
            if value is not None and value.isdigit():
                return int(value)
    header = (response.headers.get("Expires") or "").strip()
    return int(header) if header.isdigit() else asked
