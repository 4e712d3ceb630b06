"""Dial-out for the control plane: where a destination is routed, the per-application limit on
calls up at once, lists dialled one after another, and the notification when each call ends.

Routing (sans-I/O, `plan_route`): `+` and digits (E.164) go to the configured trunk with its
credentials; `sip:` URIs are called directly (UDP). Host names are resolved before the INVITE.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog
from sipmessage import URI

from bridge.conference.dialout import DialOut, DialStatus
from bridge.config import DialOutConfig
from bridge.events import BridgeEvent, DialOutEnded, DialOutSettled
from bridge.sip.auth import Credentials
from bridge.sip.transaction import Peer
from control.events import iso

if TYPE_CHECKING:
    from control.plane import ControlPlane

log = structlog.get_logger(__name__)

E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
CALLER_ID = re.compile(r"^[+]?[0-9]{1,20}$")
RESOLVE_TIMEOUT_S = 2.0
KEEP_FINISHED = 10_000  # finished calls kept for GET /v1/dialouts/{ref}; older ones are dropped


class RouteError(ValueError):
    """A destination we cannot call; the message names the field."""


@dataclass(frozen=True)
class Route:
    target: URI
    host: str  # may be a name: resolve before calling
    port: int
    credentials: Credentials | None
    via_trunk: bool


def plan_route(dest: str, config: DialOutConfig) -> Route:
    if dest.startswith("+"):
        if not E164.match(dest):
            raise RouteError(f"dest: {dest!r} is not an E.164 number (+ and up to 15 digits)")
        if not config.trunk:
            raise RouteError(f"dest: {dest!r}: no trunk is configured for numbers")
        host, _, port = config.trunk.rpartition(":")
        credentials = None
        if config.trunk_username:
            credentials = Credentials(config.trunk_username, config.trunk_password)
        return Route(URI(scheme="sip", user=dest, host=host), host, int(port), credentials, True)
    if dest.lower().startswith("sip:"):
        try:
            uri = URI.parse(dest)
        except ValueError:
            raise RouteError(f"dest: {dest!r} is not a valid SIP URI") from None
        if not uri.host:
            raise RouteError(f"dest: {dest!r} has no host to send to")
        transport = (uri.parameters.get("transport") or "udp").lower()
        if transport != "udp":
            raise RouteError(f"dest: {dest!r}: only UDP is supported for calls out")
        port = uri.port or 5060
        if not 0 < port < 65536:
            raise RouteError(f"dest: {dest!r}: bad port")
        return Route(uri, uri.host, port, None, False)
    raise RouteError(f"dest: {dest!r} must be an E.164 number (+ and digits) or a sip: URI")


async def resolve(host: str) -> str:
    """An IPv4 address for `host` (literal or name), or RouteError."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, None, family=socket.AF_INET, type=socket.SOCK_DGRAM),
            RESOLVE_TIMEOUT_S,
        )
    except (OSError, TimeoutError):
        raise RouteError(f"dest: cannot resolve host {host!r}") from None
    return str(infos[0][4][0])


def notification(ended: DialOutEnded, currency: str) -> dict[str, Any]:
    """What notify_url receives when the call ends: the Hoiio fields, rates at zero."""
    minutes = 0
    if ended.answered_at is not None:
        minutes = max(1, math.ceil((ended.ended_at - ended.answered_at) / 60))
    return {
        "txn_ref": ended.ref,
        "dest": ended.dest,
        "call_status": ended.status,
        "tag": ended.tag,
        "date": iso(ended.started_at),
        "answered_at": iso(ended.answered_at),
        "ended_at": iso(ended.ended_at),
        "duration": minutes,
        "rate": 0.0,
        "debit": 0.0,
        "currency": currency,
        "sip_status": ended.sip_status,
        "reason": ended.reason,
        "room": ended.room,
    }


@dataclass
class Request:
    """One API request: its destinations, dialled in order, and where to notify."""

    tenant_id: str
    room: str
    calls: list[DialOut]
    notify_url: str | None
    notify_format: Callable[[dict[str, Any]], dict[str, str]] | None = None


class DialOuts:
    """Outgoing calls of every application, as the control plane runs them."""

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self.config = plane.config.dialout
        self.records: dict[str, DialOut] = {}  # every call asked for since start, by ref
        self.requests: dict[str, Request] = {}  # by ref
        self.active: dict[str, set[str]] = {}  # tenant -> refs queued or up
        self._settled: dict[str, asyncio.Future[str]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def active_count(self, tenant_id: str) -> int:
        return len(self.active.get(tenant_id, ()))

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
        notify_format: Callable[[dict[str, Any]], dict[str, str]] | None = None,
    ) -> list[DialOut]:
        """Check every destination, then queue the calls; raises RouteError (400) or
        LimitError (429) before anything is dialled."""
        if len(dests) > self.config.max_destinations:
            raise RouteError(f"dest: at most {self.config.max_destinations} destinations")
        routes = [plan_route(dest, self.config) for dest in dests]
        for route in routes:
            await resolve(route.host)
        if self.active_count(tenant_id) + len(dests) > self.config.max_concurrent:
            raise LimitError(
                f"concurrent call limit reached: {self.active_count(tenant_id)} calls up or "
                f"queued, {len(dests)} asked, at most {self.config.max_concurrent}"
            )
        calls = [
            DialOut(
                ref=secrets.token_hex(8),
                room=room,
                dest=dest,
                caller_id="anonymous" if private else caller_id,
                confirm=confirm,
                started_at=0.0,
                owner=tenant_id,
                tag=tag,
            )
            for dest in dests
        ]
        request = Request(tenant_id, room, calls, notify_url, notify_format)
        for call in calls:
            self.records[call.ref] = call
            self.requests[call.ref] = request
            self.active.setdefault(tenant_id, set()).add(call.ref)
        task = asyncio.create_task(self._dial_in_order(request, routes, private))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return calls

    async def _dial_in_order(self, request: Request, routes: list[Route], private: bool) -> None:
        """Each number once the previous one's outcome is known (answered, busy, ...)."""
        service = self.plane.service
        for call, route in zip(request.calls, routes, strict=True):
            if self.plane.conferences.get(request.room) is None:
                self._give_up(call, "conference ended")
                continue
            try:
                address = await resolve(route.host)
            except RouteError as exc:
                self._give_up(call, str(exc))
                continue
            settled = asyncio.get_running_loop().create_future()
            self._settled[call.ref] = settled
            service.dial(
                call,
                target=route.target,
                peer=Peer(address, route.port, "udp"),
                now=service.monotonic(),
                credentials=route.credentials,
                headers=self._headers(call, route, private),
            )
            with contextlib.suppress(asyncio.CancelledError):
                await settled

    def _headers(self, call: DialOut, route: Route, private: bool) -> tuple[tuple[str, str], ...]:
        headers: list[tuple[str, str]] = []
        if private:
            headers.append(("Privacy", "id"))
        if route.via_trunk and self.config.trunk_pai and not private:
            host = self.plane.config.advertise_address
            headers.append(("P-Asserted-Identity", f"<sip:{call.caller_id}@{host}>"))
        return tuple(headers)

    def _give_up(self, call: DialOut, reason: str) -> None:
        """A queued call that cannot be placed: failed, with its notification."""
        call.settle(DialStatus.FAILED, reason)
        now = datetime.now(UTC).timestamp()
        call.started_at = call.started_at or now
        call.ended_at = now
        self.plane.service.events.publish(
            DialOutEnded(
                now, call.room, "", call.ref, call.dest, call.caller_id, str(call.status),
                None, reason, call.tag, call.owner, call.started_at, None, now,
            )
        )

    def on_event(self, event: BridgeEvent) -> None:
        """From the bridge's bus (synchronous): outcomes unblock the next number."""
        if isinstance(event, DialOutSettled):
            future = self._settled.pop(event.ref, None)
            if future is not None and not future.done():
                future.set_result(event.status)
        elif isinstance(event, DialOutEnded):
            future = self._settled.pop(event.ref, None)
            if future is not None and not future.done():
                future.set_result(event.status)
            if event.owner is not None:
                self.active.get(event.owner, set()).discard(event.ref)
            self._forget_oldest()

    def _forget_oldest(self) -> None:
        """Bound memory on a long-running bridge: drop the oldest finished calls."""
        excess = len(self.records) - KEEP_FINISHED
        for ref in [r for r, call in self.records.items() if call.ended_at is not None][:excess]:
            del self.records[ref]
            self.requests.pop(ref, None)

    def notify_format_of(self, ref: str) -> Callable[[dict[str, Any]], dict[str, str]] | None:
        request = self.requests.get(ref)
        return request.notify_format if request else None

    def notify_url_of(self, ref: str) -> str | None:
        request = self.requests.get(ref)
        return request.notify_url if request else None

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task


class LimitError(Exception):
    """Too many calls up at once for one application (429)."""
