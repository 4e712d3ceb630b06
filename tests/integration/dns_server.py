"""A tiny authoritative DNS server on loopback for tests (built with dnspython's messages):
it answers the records it is given, NXDOMAIN for other names."""

from __future__ import annotations

import asyncio

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from tests.integration.harness import LOOPBACK


class DnsServer(asyncio.DatagramProtocol):
    """`records`: (name, type, rdata text) such as ("_sip._udp.trunk.test", "SRV",
    "10 0 5071 a.trunk.test.")."""

    def __init__(self, records: list[tuple[str, str, str]]) -> None:
        self.records = records
        self.queries: list[tuple[str, str]] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0

    async def start(self) -> DnsServer:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(LOOPBACK, 0))
        self.transport = transport
        self.port = transport.get_extra_info("sockname")[1]
        return self

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[override]
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        name = question.name.to_text().rstrip(".").lower()
        kind = dns.rdatatype.to_text(question.rdtype)
        self.queries.append((name, kind))
        found = [r for r in self.records if r[0].lower() == name]
        for _, rtype, rdata in (r for r in found if r[1] == kind):
            response.answer.append(
                dns.rrset.from_text(question.name, 60, dns.rdataclass.IN, rtype, rdata)
            )
        if not found:
            response.set_rcode(dns.rcode.NXDOMAIN)
        assert self.transport is not None
        self.transport.sendto(response.to_wire(), addr)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
