"""Dial-out for the control plane: where a destination is routed, the per-application limit on
calls up at once, lists dialled one after another, and the record of each call.

Routing (sans-I/O, `plan_route`): `+` and digits (E.164) go to the configured trunk with its
credentials (over `dialout.trunk_transport`); `sip:` URIs are called directly over UDP, `sips:`
URIs and `;transport=tls` over TLS. Host names are resolved before the INVITE.

`DialOuts` knows the bridge only through its control port: it hands over a frozen
`DialRequest` per call and folds the bridge's `DialOutSettled`/`DialOutEnded` events into its
own `CallOut` records, by reference. What happens when a call ends (call record, notification,
event) is the plane's business, told through the `finished` callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import structlog
from sipmessage import URI, Parameters

from bridge.config import Config, DialOutConfig
from bridge.control_port import ConferenceControl, DialRequest
from bridge.events import BridgeEvent, DialOutEnded, DialOutRinging, DialOutSettled
from bridge.sip.auth import Credentials
from bridge.sip.routing import DEFAULT_TLS_PORT  # a TLS target without a port (no SIPS SRV)
from bridge.sip.transaction import Peer
from control.callout import DIALLING, FAILED, RINGING, CallOut, NotifyFormat
from control.locate import LocateError, locate

log = structlog.get_logger(__name__)

E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
CALLER_ID = re.compile(r"^[+]?[0-9]{1,20}$")
KEEP_FINISHED = 10_000  # finished calls kept for GET /v1/dialouts/{ref}; older ones are dropped


class RouteError(ValueError):
    """A destination we cannot call; the message names the field."""


class LimitError(Exception):
    """Too many calls up at once for one application."""


@dataclass(frozen=True)
class Route:
    target: URI
    host: str  # may be a name: located (RFC 3263) before calling
    port: int | None  # None: a name without a port, looked up by NAPTR/SRV
    credentials: Credentials | None
    via_trunk: bool
    proxy_route: str = ""  # the Route header for the outbound proxy, when one is configured
    transport: str = "udp"  # "udp" | "tls"


def plan_route(dest: str, config: DialOutConfig) -> Route:
    """Where a call to `dest` goes: the trunk, the URI's host, or through the outbound proxy
    (the INVITE is sent to the proxy with a Route naming it; the callee is the Request-URI)."""
    route = _direct_route(dest, config)
    if not config.outbound_proxy:
        return route
    host, _, port = config.outbound_proxy.rpartition(":")
    if not 0 < int(port) < 65536:
        raise RouteError(f"dialout.outbound_proxy: bad port {port}")
    return replace(route, host=host, port=int(port), proxy_route=f"<sip:{host}:{port};lr>")


def _direct_route(dest: str, config: DialOutConfig) -> Route:
    if dest.startswith("+"):
        if not E164.match(dest):
            raise RouteError(f"dest: {dest!r} is not an E.164 number (+ and up to 15 digits)")
        if not config.trunk:
            raise RouteError(f"dest: {dest!r}: no trunk is configured for numbers")
        host, _, port = config.trunk.partition(":")
        credentials = None
        if config.trunk_username:
            credentials = Credentials(config.trunk_username, config.trunk_password)
        tls = config.trunk_transport == "tls"
        params = Parameters(transport="tls") if tls else Parameters()
        target = URI(scheme="sip", user=dest, host=host, parameters=params)
        port_number = int(port) if port else (DEFAULT_TLS_PORT if tls else None)
        transport = "tls" if tls else "udp"
        return Route(target, host, port_number, credentials, True, transport=transport)
    if dest.lower().startswith(("sip:", "sips:")):
        try:
            uri = URI.parse(dest)
        except ValueError:
            raise RouteError(f"dest: {dest!r} is not a valid SIP URI") from None
        if not uri.host:
            raise RouteError(f"dest: {dest!r} has no host to send to")
        transport = (uri.parameters.get("transport") or "udp").lower()
        if uri.scheme.lower() == "sips":
            transport = "tls"
        if transport not in ("udp", "tls"):
            raise RouteError(f"dest: {dest!r}: calls out go over UDP or TLS, not {transport}")
        if uri.port is not None and not 0 < uri.port < 65536:
            raise RouteError(f"dest: {dest!r}: bad port")
        port = uri.port if uri.port is not None or transport == "udp" else DEFAULT_TLS_PORT
        return Route(uri, uri.host, port, None, False, transport=transport)
    raise RouteError(f"dest: {dest!r} must be an E.164 number (+ and digits) or a sip: URI")


async def resolve(route: Route, dns_server: str) -> list[Peer]:
    """Where to send the INVITE, in the order to try (RFC 3263), or RouteError."""
    try:
        targets = await locate(route.host, route.port, dns_server)
    except LocateError:
        raise RouteError(f"dest: cannot resolve host {route.host!r}") from None
    return [Peer(address, port, route.transport) for address, port in targets]


@dataclass(frozen=True)
class Order:
    """One API request's calls, dialled in order, with the routes checked for them."""

    calls: list[CallOut]
    routes: list[Route]
    private: bool


class DialOuts:
    """Outgoing calls of every application, as the control plane runs them.

    `is_open(room)` says whether the conference still takes calls (a queued call to a room
    that ended is not placed); `finished(call)` is told once per call when it is over.
    `wall_clock` stamps calls finished here in the bridge's time scale (epoch seconds)."""

    def __init__(
        self,
        bridge: ConferenceControl,
        config: Config,
        *,
        is_open: Callable[[str], bool],
        finished: Callable[[CallOut], None],
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.bridge = bridge
        self.config = config.dialout
        self.advertise_address = config.advertise_address
        self.is_open = is_open
        self.finished = finished
        self.wall_clock = wall_clock
        self.records: dict[str, CallOut] = {}  # every call asked for since start, by ref
        self.active: dict[str, set[str]] = {}  # tenant -> refs queued or up
        self._settled: dict[str, asyncio.Future[str]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def active_count(self, tenant_id: str) -> int:
        return len(self.active.get(tenant_id, ()))

    def pending_into(self, room: str) -> int:
        """Calls to `room` queued or still being placed (not yet answered or refused)."""
        return sum(1 for c in self.records.values() if c.room == room and not c.settled)

    async def start_request(
        self,
        tenant_id: str,
        room: str,
        dests: list[str],
        *,
        caller_id: str,
        private: bool,
        confirm: bool,
        tag: str,
        notify_url: str | None,
        notify_format: NotifyFormat | None = None,
        max_duration_s: int | None = None,
    ) -> list[CallOut]:
        """Check every destination, then queue the calls; raises RouteError or LimitError
        before anything is dialled."""
        if len(dests) > self.config.max_destinations:
            raise RouteError(f"dest: at most {self.config.max_destinations} destinations")
        routes = [plan_route(dest, self.config) for dest in dests]
        for route in routes:
            await resolve(route, self.config.dns_server)
        if self.active_count(tenant_id) + len(dests) > self.config.max_concurrent:
            raise LimitError(
                f"concurrent call limit reached: {self.active_count(tenant_id)} calls up or "
                f"queued, {len(dests)} asked, at most {self.config.max_concurrent}"
            )
        calls = [
            CallOut(
                ref=secrets.token_hex(8),
                tenant_id=tenant_id,
                room=room,
                dest=dest,
                caller_id="anonymous" if private else caller_id,
                confirm=confirm,
                tag=tag,
                notify_url=notify_url,
                notify_format=notify_format,
                max_duration_s=max_duration_s,
            )
            for dest in dests
        ]
        for call in calls:
            self.records[call.ref] = call
            self.active.setdefault(tenant_id, set()).add(call.ref)
        task = asyncio.create_task(self._dial_in_order(Order(calls, routes, private)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return calls

    async def _dial_in_order(self, order: Order) -> None:
        """Each number once the previous one's outcome is known (answered, busy, ...)."""
        for call, route in zip(order.calls, order.routes, strict=True):
            if call.settled:  # cancelled while queued
                continue
            if not self.is_open(call.room):
                self._give_up(call, "conference ended")
                continue
            try:
                peers = await resolve(route, self.config.dns_server)
            except RouteError as exc:
                self._give_up(call, str(exc))
                continue
            settled = asyncio.get_running_loop().create_future()
            self._settled[call.ref] = settled
            call.started_at = self.wall_clock()
            self.bridge.dial(
                DialRequest(
                    ref=call.ref,
                    room=call.room,
                    dest=call.dest,
                    caller_id=call.caller_id,
                    confirm=call.confirm,
                    target=route.target,
                    peer=peers[0],
                    alternatives=tuple(peers[1:]),
                    credentials=route.credentials,
                    headers=self._headers(call, route, order.private),
                    max_duration_s=call.max_duration_s,
                )
            )
            await settled  # a stop cancels the whole list here

    def _headers(self, call: CallOut, route: Route, private: bool) -> tuple[tuple[str, str], ...]:
        headers: list[tuple[str, str]] = []
        if route.proxy_route:
            headers.append(("Route", route.proxy_route))
        if private:
            headers.append(("Privacy", "id"))
        if route.via_trunk and self.config.trunk_pai and not private:
            identity = f"<sip:{call.caller_id}@{self.advertise_address}>"
            headers.append(("P-Asserted-Identity", identity))
        return tuple(headers)

    def cancel(self, ref: str) -> bool:
        """Stop a call that is not answered yet: a queued one is never placed, a placed one
        is cancelled by the bridge. False when it is answered or over."""
        call = self.records.get(ref)
        if call is None or call.settled:
            return False
        if not call.started_at:
            self._give_up(call, "cancelled")
            return True
        return self.bridge.cancel_dial(ref)

    def _give_up(self, call: CallOut, reason: str) -> None:
        """A queued call that cannot be placed: failed here, never handed to the bridge."""
        now = self.wall_clock()
        call.status, call.reason = FAILED, reason
        call.started_at = call.started_at or now
        call.ended_at = now
        self._finish(call)

    def on_event(self, event: BridgeEvent) -> None:
        """From the bridge's bus (synchronous): outcomes unblock the next number, the end of a
        call completes its record."""
        if isinstance(event, DialOutRinging):
            call = self.records.get(event.ref)
            if call is not None and call.status == DIALLING:
                call.status = RINGING
        elif isinstance(event, DialOutSettled):
            self._release(event.ref, event.status)
            call = self.records.get(event.ref)
            if call is not None and not call.settled:
                call.status, call.participant = event.status, event.participant
                call.sip_status, call.reason = event.sip_status, event.reason
                call.answered_at = event.answered_at
        elif isinstance(event, DialOutEnded):
            self._release(event.ref, event.status)
            call = self.records.get(event.ref)
            if call is None:
                log.warning("dialout.unknown_ref", ref=event.ref)
                return
            call.status, call.sip_status, call.reason = event.status, event.sip_status, event.reason
            call.started_at = event.started_at or call.started_at
            call.answered_at, call.ended_at = event.answered_at, event.ended_at
            self._finish(call)

    def _release(self, ref: str, status: str) -> None:
        future = self._settled.pop(ref, None)
        if future is not None and not future.done():
            future.set_result(status)

    def _finish(self, call: CallOut) -> None:
        self.active.get(call.tenant_id, set()).discard(call.ref)
        self.finished(call)
        self._forget_oldest()

    def _forget_oldest(self) -> None:
        """Bound memory on a long-running bridge: drop the oldest finished calls."""
        excess = len(self.records) - KEEP_FINISHED
        for ref in [r for r, call in self.records.items() if call.ended_at is not None][:excess]:
            del self.records[ref]

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
