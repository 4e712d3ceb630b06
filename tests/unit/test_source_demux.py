"""The shared RTP port's demultiplexing rules (`bridge.rtp.source_demux`), without sockets."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import numpy as np
import pytest

from bridge.net.mmsg import SOCKADDR_IN, ipv4
from bridge.rtp.source_demux import LATCH_GRACE_S, UNMATCHED, SourceDemux, address_key


def sources(*addresses: tuple[str, int]) -> tuple[np.ndarray, np.ndarray]:
    ips = np.array([ipv4(host) for host, _ in addresses], np.uint32)
    ports = np.array([port for _, port in addresses], np.uint16)
    return ips, ports


@pytest.fixture(autouse=True, params=["numpy", "compiled"])
def route_path(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every rule holds both ways: `route` (numpy) and `route_names` (the compiled match the
    shared port uses when built)."""
    global COMPILED
    COMPILED = request.param == "compiled"
    yield
    COMPILED = False


COMPILED = False


def routed(demux: SourceDemux, *addresses: tuple[str, int], now: float = 1.0) -> list[str | None]:
    """Where each source's datagram goes (by default past every call's LATCH_GRACE_S)."""
    ips, ports = sources(*addresses)
    if COMPILED:  # as recvmmsg leaves them: struct sockaddr_in rows
        names = np.zeros(len(addresses), SOCKADDR_IN)
        names["family"], names["port"], names["addr"] = socket.AF_INET, ports, ips
        index, slots = demux.route_names(names, now)
    else:
        index, slots = demux.route(ips, ports, now)
    return [slots[i] if i != UNMATCHED else None for i in index.tolist()]


def test_the_exact_sdp_address_routes_and_latches() -> None:
    demux = SourceDemux()
    demux.add("a", ("10.0.0.1", 4000), "10.0.0.1", 0.0)
    demux.add("b", ("10.0.0.1", 4002), "10.0.0.1", 0.0)
    demux.add("c", ("10.0.0.2", 4000), "10.0.0.2", 0.0)
    got = routed(demux, ("10.0.0.2", 4000), ("10.0.0.1", 4002), ("10.0.0.1", 4000))
    assert got == ["c", "b", "a"]
    assert demux.latched("a") == ("10.0.0.1", 4000)
    assert demux.unmatched == 0


def test_an_unknown_source_latches_to_the_only_unlatched_call_from_its_ip() -> None:
    """A phone behind a NAT: its SDP names a private address, its packets come from the
    NAT's public one, which is also where its SIP came from."""
    demux = SourceDemux()
    demux.add("nat", ("192.168.1.5", 4000), "203.0.113.9", 0.0)
    demux.add("other", ("198.51.100.7", 5000), "198.51.100.7", 0.0)
    assert routed(demux, ("203.0.113.9", 61000)) == ["nat"]
    assert demux.latched("nat") == ("203.0.113.9", 61000)
    # once latched, that source is its, and another port from that IP is nobody's
    assert routed(demux, ("203.0.113.9", 61000), ("203.0.113.9", 61002)) == ["nat", None]
    assert demux.unmatched == 1


def test_an_unheard_call_is_not_latched_to_another_port_of_its_ip_within_the_grace() -> None:
    """Two phones on one host: the second's first packets, before its call is set up here,
    must not be taken for the first's, which has just not been heard yet."""
    demux = SourceDemux()
    demux.add("first", ("127.0.0.1", 4000), "127.0.0.1", 0.0)
    early = LATCH_GRACE_S / 2
    assert routed(demux, ("127.0.0.1", 4002), ("127.0.0.1", 4000), now=early) == [None, "first"]
    demux.add("second", ("127.0.0.1", 4002), "127.0.0.1", early)
    assert routed(demux, ("127.0.0.1", 4002), now=early) == ["second"]


def test_a_relay_on_the_phones_host_is_latched_after_the_grace() -> None:
    """The phone's SDP names its own port, its RTP comes through a relay on the same host."""
    demux = SourceDemux()
    demux.add("phone", ("127.0.0.1", 4000), "127.0.0.1", 0.0)
    assert routed(demux, ("127.0.0.1", 5000), now=LATCH_GRACE_S / 2) == [None]
    assert routed(demux, ("127.0.0.1", 5000), now=LATCH_GRACE_S) == ["phone"]
    assert demux.latched("phone") == ("127.0.0.1", 5000)


def test_a_young_call_from_the_same_ip_makes_rule_2_wait() -> None:
    """Two relayed calls from one host: an old unheard one and one just added. Whose the
    unknown source is cannot be told, so it is dropped rather than guessed."""
    demux = SourceDemux()
    demux.add("old", ("127.0.0.1", 4000), "127.0.0.1", 0.0)
    demux.add("young", ("127.0.0.1", 4002), "127.0.0.1", 1.0)
    assert routed(demux, ("127.0.0.1", 5000), now=1.0 + LATCH_GRACE_S / 2) == [None]
    assert demux.latched("old") is None


def test_an_unknown_source_is_dropped_when_two_calls_from_its_ip_are_unlatched() -> None:
    """Two callers behind one NAT address: which is which is not guessed."""
    demux = SourceDemux()
    demux.add("x", ("192.168.1.5", 4000), "203.0.113.9", 0.0)
    demux.add("y", ("192.168.1.6", 4000), "203.0.113.9", 0.0)
    assert routed(demux, ("203.0.113.9", 61000), ("203.0.113.9", 61000)) == [None, None]
    assert demux.unmatched == 2
    assert demux.latched("x") is None and demux.latched("y") is None


def test_strangers_and_latched_calls_other_ports_are_dropped_and_counted() -> None:
    demux = SourceDemux()
    demux.add("a", ("127.0.0.1", 4000), "127.0.0.1", 0.0)
    assert routed(demux, ("127.0.0.1", 4000)) == ["a"]
    got = routed(demux, ("127.0.0.2", 4000), ("127.0.0.1", 4002), ("127.0.0.1", 4000))
    assert got == [None, None, "a"]
    assert demux.unmatched == 2


def test_a_latched_call_is_not_stolen_by_another_calls_sdp_address() -> None:
    demux = SourceDemux()
    demux.add("first", ("192.168.0.1", 4000), "10.0.0.1", 0.0)
    assert routed(demux, ("10.0.0.1", 4100)) == ["first"]  # rule 2: latched to 4100
    demux.add("second", ("10.0.0.1", 4100), "10.0.0.1", 0.0)  # a new call, SDP where first latched
    demux.add("third", ("192.168.0.1", 4000), "10.0.0.1", 0.0)  # first's SDP address
    assert routed(demux, ("10.0.0.1", 4100)) == ["first"]
    assert routed(demux, ("192.168.0.1", 4000)) == ["third"]


def test_removed_calls_and_sdp_moves() -> None:
    demux = SourceDemux()
    demux.add("a", ("10.0.0.1", 4000), "10.0.0.1", 0.0)
    demux.add("b", ("10.0.0.2", 4000), "10.0.0.2", 0.0)
    demux.remove("a")
    assert routed(demux, ("10.0.0.1", 4000), ("10.0.0.2", 4000)) == [None, "b"]
    demux.add("c", ("10.0.0.3", 4000), "10.0.0.3", 0.0)
    demux.update("c", ("10.0.0.3", 4010))  # a re-INVITE before its first packet
    assert routed(demux, ("10.0.0.3", 4010)) == ["c"]
    demux.update("b", ("10.0.0.2", 4020))  # a latched call stays where it latched
    assert routed(demux, ("10.0.0.2", 4000)) == ["b"]


def test_addresses_that_are_not_ipv4_match_nothing() -> None:
    assert address_key("::1", 4000) == -1
    assert address_key("pbx.example", 4000) == -1
    demux = SourceDemux()
    demux.add("v6", ("::1", 4000), "::1", 0.0)
    demux.add("held", ("10.0.0.1", 0), "10.0.0.1", 0.0)  # port 0: no SDP address to match
    assert routed(demux, ("10.0.0.1", 0), ("10.0.0.9", 1)) == ["held", None]  # rule 2


def test_an_empty_table_drops_everything() -> None:
    demux = SourceDemux()
    assert routed(demux, ("10.0.0.1", 4000)) == [None]
    assert demux.unmatched == 1
