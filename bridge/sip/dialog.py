"""RFC 3261 §12 dialogs: the state two user agents share, and requests built from it.

Header values are written with our own formatter: sipmessage's ``Address.__str__`` percent-
encodes parameter values, which would corrupt quoted parameters of the peer's addresses.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sipmessage import URI, Address, Parameters, Request, Response, Via

from bridge.sip.message import SipError, header_tag, new_branch, split_list

_NEW_CSEQ_FORBIDDEN = frozenset({"ACK", "CANCEL"})
_TARGET_REFRESH = frozenset({"INVITE", "UPDATE"})


def format_parameters(parameters: Parameters) -> str:
    return "".join(
        f";{key}" if value is None else f";{key}={value}" for key, value in parameters.items()
    )


def format_address(address: Address, tag: str | None = None) -> str:
    """``"name" <uri>;params[;tag=...]`` without percent-encoding the parameters."""
    params = {key: value for key, value in address.parameters.items() if key.lower() != "tag"}
    if tag:
        params["tag"] = tag
    name = address.name.replace("\\", "\\\\").replace('"', '\\"')
    prefix = f'"{name}" ' if address.name else ""
    return f"{prefix}<{address.uri}>{format_parameters(Parameters(**params))}"


def _without_tag(address: Address) -> Address:
    params = {key: value for key, value in address.parameters.items() if key.lower() != "tag"}
    return Address(uri=address.uri, name=address.name, parameters=Parameters(**params))


def dialog_id_of(request: Request) -> tuple[str, str, str]:
    """(Call-ID, local tag, remote tag) as the UAS sees it: To tag is ours, From tag theirs."""
    return (request.call_id, header_tag(request, "To") or "", header_tag(request, "From") or "")


def _first_contact_uri(message: Request | Response) -> URI | None:
    contacts = message.contact
    return contacts[0].uri if contacts else None


@dataclass
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: Address
    remote_uri: Address
    remote_target: URI
    route_set: list[Address]
    local_seq: int
    remote_seq: int | None

    @classmethod
    def as_uas(cls, request: Request, local_tag: str) -> Dialog:
        """The dialog a UAS creates when answering ``request`` (an INVITE) with ``local_tag``.

        Without a Contact (RFC 2543 peers) the From URI is the best remote target there is.
        """
        try:
            remote = request.from_address
            target = _first_contact_uri(request) or remote.uri
            return cls(
                call_id=request.call_id,
                local_tag=local_tag,
                remote_tag=remote.parameters.get("tag") or "",
                local_uri=_without_tag(request.to_address),
                remote_uri=_without_tag(remote),
                remote_target=target,
                route_set=request.record_route,
                local_seq=0,
                remote_seq=request.cseq.sequence,
            )
        except ValueError as exc:
            raise SipError(400, f"Cannot build a dialog: {exc}") from exc

    @classmethod
    def as_uac(cls, request: Request, response: Response) -> Dialog:
        """The dialog our ``request`` created with a 101-299 ``response`` (route set reversed)."""
        try:
            local = request.from_address
            remote = response.to_address
            return cls(
                call_id=request.call_id,
                local_tag=local.parameters.get("tag") or "",
                remote_tag=remote.parameters.get("tag") or "",
                local_uri=_without_tag(local),
                remote_uri=_without_tag(remote),
                remote_target=_first_contact_uri(response) or request.uri,
                route_set=list(reversed(response.record_route)),
                local_seq=request.cseq.sequence,
                remote_seq=None,
            )
        except ValueError as exc:
            raise SipError(None, f"Cannot build a dialog: {exc}") from exc

    @property
    def id(self) -> tuple[str, str, str]:
        return (self.call_id, self.local_tag, self.remote_tag)

    def receive_request(self, request: Request) -> None:
        """Check the CSeq order (§12.2.2) and take a new remote target from a re-INVITE."""
        sequence = request.cseq.sequence
        if self.remote_seq is not None and sequence < self.remote_seq:
            raise SipError(500, "CSeq lower than the previous request's")
        if request.method not in _NEW_CSEQ_FORBIDDEN:
            self.remote_seq = sequence
        if request.method in _TARGET_REFRESH:
            self._refresh_target(request)

    def receive_response(self, response: Response) -> None:
        """A 2xx to our re-INVITE refreshes the remote target (§12.2.1.2)."""
        if 200 <= response.code < 300 and response.cseq.method in _TARGET_REFRESH:
            self._refresh_target(response)

    def _refresh_target(self, message: Request | Response) -> None:
        try:
            target = _first_contact_uri(message)
        except ValueError as exc:
            raise SipError(400, "Malformed Contact") from exc
        if target is not None:
            self.remote_target = target

    def create_request(
        self,
        method: str,
        *,
        via: Via | None = None,
        host: str | None = None,
        port: int | None = None,
        transport: str = "UDP",
        contact: Address | None = None,
        body: bytes = b"",
        content_type: str | None = None,
        extra_headers: Iterable[tuple[str, str]] = (),
    ) -> Request:
        """A new in-dialog request with the next local CSeq (not ACK or CANCEL: see create_ack).

        Give either ``via`` or ``host``/``port``/``transport``; the latter gets a new branch and
        an empty ``rport``.
        """
        if method in _NEW_CSEQ_FORBIDDEN:
            raise ValueError(f"{method} reuses a CSeq: use create_ack or create_cancel")
        via_value = _via_value(via, host, port, transport)
        self.local_seq += 1
        return self._build(
            method, self.local_seq, via_value, contact, body, content_type, extra_headers
        )

    def create_ack(
        self,
        cseq_number: int,
        *,
        via: Via | None = None,
        host: str | None = None,
        port: int | None = None,
        transport: str = "UDP",
        body: bytes = b"",
        content_type: str | None = None,
    ) -> Request:
        """The ACK for a 2xx to the INVITE with ``cseq_number`` (§13.2.2.4): its own branch."""
        via_value = _via_value(via, host, port, transport)
        return self._build("ACK", cseq_number, via_value, None, body, content_type, ())

    def _build(
        self,
        method: str,
        cseq_number: int,
        via_value: str,
        contact: Address | None,
        body: bytes,
        content_type: str | None,
        extra_headers: Iterable[tuple[str, str]],
    ) -> Request:
        uri, routes = self._routing()
        request = Request(method=method, uri=uri, body=body)
        request.headers.add("Via", via_value)
        request.headers.add("Max-Forwards", "70")
        for route in routes:
            request.headers.add("Route", route)
        request.headers.add("From", format_address(self.local_uri, self.local_tag))
        request.headers.add("To", format_address(self.remote_uri, self.remote_tag or None))
        request.headers.add("Call-ID", self.call_id)
        request.headers.add("CSeq", f"{cseq_number} {method}")
        if contact is not None:
            request.headers.add("Contact", format_address(contact))
        for name, value in extra_headers:
            request.headers.add(name, value)
        if content_type is not None:
            request.headers.add("Content-Type", content_type)
        return request

    def _routing(self) -> tuple[URI, list[str]]:
        """Request-URI and Route values (§12.2.1.1), loose or strict routing."""
        routes = [format_address(route) for route in self.route_set]
        if not self.route_set or "lr" in self.route_set[0].uri.parameters:
            return self.remote_target, routes
        first = self.route_set[0].uri
        allowed = {
            k: v
            for k, v in first.parameters.items()
            if k not in ("method", "maddr", "ttl", "transport", "lr")
        }
        strict_uri = URI(
            scheme=first.scheme,
            host=first.host,
            user=first.user,
            password=first.password,
            port=first.port,
            parameters=Parameters(**allowed),
        )
        return strict_uri, [*routes[1:], f"<{self.remote_target}>"]


def _via_value(via: Via | None, host: str | None, port: int | None, transport: str) -> str:
    if via is not None:
        return (
            f"SIP/2.0/{via.transport} {via.host}"
            + (f":{via.port}" if via.port is not None else "")
            + format_parameters(via.parameters)
        )
    if host is None:
        raise ValueError("give a Via or the local host")
    hostport = host if port is None else f"{host}:{port}"
    return f"SIP/2.0/{transport.upper()} {hostport};branch={new_branch()};rport"


def create_cancel(invite: Request) -> Request:
    """The CANCEL for our pending INVITE (§9.1): same Via, Request-URI, From, To, Call-ID, CSeq."""
    cancel = Request(method="CANCEL", uri=invite.uri)
    cancel.headers.add("Via", split_list(invite.headers.getlist("Via")[0])[0])
    cancel.headers.add("Max-Forwards", "70")
    for value in invite.headers.getlist("Route"):
        cancel.headers.add("Route", value)
    for name in ("From", "To", "Call-ID"):
        cancel.headers.add(name, invite.headers[name])
    cancel.headers.add("CSeq", f"{invite.cseq.sequence} CANCEL")
    return cancel
