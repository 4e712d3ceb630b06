"""Where SIP requests go and which Route headers an incoming request may carry (RFC 3261
§8.1.2, §12.2.1.1, §16.4), sans-I/O.

The bridge is an endpoint behind proxies, never a proxy itself: an in-dialog request it sends
goes to the first hop of the dialog's route set (the proxy that record-routed), and a request it
receives may carry Route values naming the bridge itself (they are consumed) but none that would
bring it back here after another hop (a loop).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from sipmessage import URI, Address, Request

from bridge.sip.message import SipError
from bridge.sip.transaction import DEFAULT_SIP_PORT, Peer

DEFAULT_TLS_PORT = 5061  # sips: and transport=tls without a port (RFC 3261 §19.1.2)


@dataclass(frozen=True)
class LocalAddresses:
    """The host names and ports the bridge answers on: a Route naming one of them is ours."""

    hosts: frozenset[str]
    ports: frozenset[int]

    def names(self, uri: URI) -> bool:
        host = (uri.parameters.get("maddr") or uri.host or "").strip("[]").lower()
        return host in self.hosts and (uri.port or DEFAULT_SIP_PORT) in self.ports


def uri_peer(uri: URI, default_transport: str = "udp") -> Peer | None:
    """The address a SIP URI names, when it is an IP literal (names need DNS: bridge.sip.dns)."""
    host = (uri.parameters.get("maddr") or uri.host or "").strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    transport = (uri.parameters.get("transport") or default_transport).lower()
    if uri.scheme.lower() == "sips":
        transport = "tls"
    port = uri.port or (DEFAULT_TLS_PORT if transport == "tls" else DEFAULT_SIP_PORT)
    if not 0 < port < 65536:
        return None
    return Peer(host, port, transport if transport in ("tcp", "tls") else "udp")


def behind_nat(request: Request, source: Peer) -> bool:
    """True when the request asked for symmetric responses (RFC 3581 `rport`) and came from
    another address than its Via names: its Contact is likely a private address."""
    via = request.via[0]
    if "rport" not in via.parameters:
        return False
    sent_by = (via.host.strip("[]").lower(), via.port or DEFAULT_SIP_PORT)
    return sent_by != (source.host.lower(), source.port)


def first_hop(
    route_set: list[Address], remote_target: URI, fallback: Peer, nated: bool = False
) -> Peer:
    """Where an in-dialog request goes (§12.2.1.1 then §8.1.2): the first route when there is
    a route set (loose or strict, the first hop is the same), else the remote target.

    A stream peer keeps its connection (`fallback`): TCP and TLS requests go back on the socket
    the dialog came in on. A `sips:` or `;transport=tls` hop of a UDP dialog is reached over
    TLS (the transport connects); TCP ones and host names we cannot resolve without DNS fall
    back, and so does a peer behind NAT without a proxy (its Contact cannot be reached, its
    source can)."""
    if fallback.reliable or (nated and not route_set):
        return fallback
    uri = route_set[0].uri if route_set else remote_target
    peer = uri_peer(uri)
    if peer is None or peer.transport == "tcp":
        return fallback
    return peer


def parse_record_route(request: Request) -> list[Address]:
    """The Record-Route values of a dialog-creating request or response; a malformed one is a
    400 (a dialog with an unusable route set cannot be kept)."""
    routes: list[Address] = []
    for value in request.headers.getlist("Record-Route"):
        try:
            address = Address.parse(value)
        except ValueError as exc:
            raise SipError(400, "Malformed Record-Route URI") from exc
        if address.uri.scheme.lower() not in ("sip", "sips") or not address.uri.host:
            raise SipError(400, "Malformed Record-Route URI")
        routes.append(address)
    return routes


def consume_routes(request: Request, local: LocalAddresses) -> None:
    """Handle the Route headers of a request that reached us (§16.4 as an endpoint applies it).

    Leading values naming the bridge were put there for us and are removed. A value naming the
    bridge after another hop means the request would come back here: 482 Loop Detected. Other
    values are left as they are: the bridge answers requests itself and forwards nothing."""
    values = request.headers.getlist("Route")
    if not values:
        return
    routes: list[Address] = []
    for value in values:
        try:
            routes.append(Address.parse(value))
        except ValueError as exc:
            raise SipError(400, "Malformed Route header") from exc
    leading = 0
    while leading < len(routes) and local.names(routes[leading].uri):
        leading += 1
    if any(local.names(route.uri) for route in routes[leading:]):
        raise SipError(482, "Loop Detected: the Route comes back to the bridge")
    if leading == len(values):
        request.headers.remove("Route")
    elif leading:
        request.headers.setlist("Route", values[leading:])
