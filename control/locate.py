"""Locating a SIP server (RFC 3263) for calls out over UDP: NAPTR, then SRV, then A records.

A host name without a port is looked up as RFC 3263 says: NAPTR records offering `SIP+D2U`
name the SRV domain (without NAPTR, `_sip._udp.<host>`), SRV records give targets and ports in
priority order (RFC 2782 weights within one priority), and each target's A records give the
addresses. A name with a port, or without SRV records, is its A records on that port (5060).
The INVITE goes to the first address; the UA tries the next on 503 or no answer.

`order_srv` is the sans-I/O part; `locate` asks DNS (dnspython's asyncio resolver, the system's
servers unless `dialout.dns_server` names one).
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Sequence
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.resolver

DEFAULT_PORT = 5060
MAX_TARGETS = 8
TIMEOUT_S = 2.0


class LocateError(ValueError):
    """The name resolves to no address."""


@dataclass(frozen=True)
class SrvRecord:
    priority: int
    weight: int
    port: int
    target: str


def order_srv(records: Sequence[SrvRecord], rng: random.Random | None = None) -> list[SrvRecord]:
    """RFC 2782 order: lowest priority first; within one priority a weighted random draw
    (weight 0 records only when nothing else is left)."""
    rng = rng or random.Random()
    ordered: list[SrvRecord] = []
    for priority in sorted({r.priority for r in records}):
        pool = [r for r in records if r.priority == priority and r.target not in ("", ".")]
        pool.sort(key=lambda r: r.weight)  # zero weights first, as RFC 2782 asks
        while pool:
            total = sum(r.weight for r in pool)
            pick = rng.uniform(0, total) if total else 0.0
            running = 0
            for index, record in enumerate(pool):
                running += record.weight
                if running >= pick:
                    ordered.append(pool.pop(index))
                    break
    return ordered


def _resolver(dns_server: str) -> dns.asyncresolver.Resolver:
    if not dns_server:
        resolver = dns.asyncresolver.Resolver()
    else:
        host, _, port = dns_server.rpartition(":")
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [host]
        resolver.port = int(port)
    resolver.lifetime = TIMEOUT_S
    return resolver


async def _query(resolver: dns.asyncresolver.Resolver, name: str, kind: str) -> list:
    try:
        return list(await resolver.resolve(name, kind))
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers):
        return []
    except dns.exception.Timeout:
        raise LocateError(f"no DNS answer for {name} ({kind})") from None


async def locate(host: str, port: int | None, dns_server: str = "") -> list[tuple[str, int]]:
    """(address, port) targets for `host` in the order to try them; LocateError when none."""
    try:
        ipaddress.ip_address(host)
        return [(host, port or DEFAULT_PORT)]
    except ValueError:
        pass
    resolver = _resolver(dns_server)
    hosts: list[tuple[str, int]] = []
    if port is None:
        srv_name = f"_sip._udp.{host}"
        naptrs = [r for r in await _query(resolver, host, "NAPTR") if _udp_sip(r)]
        if naptrs:
            naptrs.sort(key=lambda r: (r.order, r.preference))
            srv_name = naptrs[0].replacement.to_text().rstrip(".")
        records = [
            SrvRecord(r.priority, r.weight, r.port, r.target.to_text().rstrip("."))
            for r in await _query(resolver, srv_name, "SRV")
        ]
        hosts = [(record.target, record.port) for record in order_srv(records)]
    if not hosts:
        hosts = [(host, port or DEFAULT_PORT)]
    targets: list[tuple[str, int]] = []
    for name, target_port in hosts:
        for answer in await _query(resolver, name, "A"):
            if len(targets) < MAX_TARGETS and (answer.address, target_port) not in targets:
                targets.append((answer.address, target_port))
    if not targets:
        raise LocateError(f"cannot resolve host {host!r}")
    return targets


def _udp_sip(record: object) -> bool:
    service = getattr(record, "service", b"")
    return bytes(service).upper() == b"SIP+D2U" and getattr(record, "flags", b"").lower() == b"s"
