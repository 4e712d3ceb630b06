"""SIP over TLS where it is decided without sockets: which transport and port a URI names,
how calls out are routed (`sips:`, `;transport=tls`, a TLS trunk), the config rules, and the
client transactions a failed connection ends at once (§17.1.4)."""

from __future__ import annotations

import pytest
from sipmessage import URI, Address

from bridge.config import ConfigError, DialOutConfig, load_config
from bridge.sip.routing import first_hop, uri_peer
from bridge.sip.transaction import Peer, TransactionLayer, TransactionTimeout
from control.dialout import RouteError, plan_route
from tests.unit.test_transaction import outgoing_request


@pytest.mark.parametrize(
    ("uri", "peer"),
    [
        ("sips:room@10.0.0.1", Peer("10.0.0.1", 5061, "tls")),
        ("sip:room@10.0.0.1;transport=tls", Peer("10.0.0.1", 5061, "tls")),
        ("sip:room@10.0.0.1:5071;transport=TLS", Peer("10.0.0.1", 5071, "tls")),
        ("sips:room@10.0.0.1:5080;transport=tcp", Peer("10.0.0.1", 5080, "tls")),
        ("sip:room@10.0.0.1;transport=tcp", Peer("10.0.0.1", 5060, "tcp")),
        ("sip:room@10.0.0.1", Peer("10.0.0.1", 5060, "udp")),
    ],
)
def test_the_transport_and_port_a_uri_names(uri: str, peer: Peer) -> None:
    assert uri_peer(URI.parse(uri)) == peer


def test_calls_out_over_tls() -> None:
    config = DialOutConfig()
    route = plan_route("sips:alice@10.0.0.9", config)
    assert (route.transport, route.port) == ("tls", 5061)
    route = plan_route("sip:alice@10.0.0.9:5071;transport=tls", config)
    assert (route.transport, route.port) == ("tls", 5071)
    assert plan_route("sip:alice@10.0.0.9", config).transport == "udp"
    trunk = DialOutConfig(trunk="trunk.example", trunk_transport="tls")
    route = plan_route("+4930123456", trunk)
    assert (route.transport, route.port, str(route.target)) == (
        "tls", 5061, "sip:+4930123456@trunk.example;transport=tls",
    )  # fmt: skip
    with pytest.raises(RouteError, match="UDP or TLS, not tcp"):
        plan_route("sip:alice@10.0.0.9;transport=tcp", config)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CONFBRIDGE_SIP_TLS_CERT": "/x.pem"}, "give tls_cert and tls_key together"),
        ({"CONFBRIDGE_RTP_SRTP": "sometimes"}, "must be one of off, optional, mandatory"),
        ({"CONFBRIDGE_DIALOUT_TRUNK_TRANSPORT": "tcp"}, "must be one of udp, tls"),
        ({"CONFBRIDGE_SIP_TLS_PORT": "70000"}, "sip.tls_port"),
    ],
)
def test_bad_tls_and_srtp_settings(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, env)


def test_a_failed_connection_ends_its_client_transactions_at_once() -> None:
    layer = TransactionLayer()
    tls, other = Peer("127.0.0.1", 5061, "tls"), Peer("127.0.0.2", 5061, "tls")
    first = layer.send_request(outgoing_request("INVITE"), tls, 0.0)
    second = layer.send_request(outgoing_request("INVITE", "z9hG4bKtwo"), other, 0.0)
    layer.transport_failed(tls)
    event = layer.next_event()
    assert event == TransactionTimeout(first, "INVITE", False, unreachable=True)
    assert layer.next_event() is None
    assert len(layer) == 1 and second


def test_in_dialog_requests_follow_a_tls_hop_and_keep_a_tls_connection() -> None:
    udp = Peer("127.0.0.9", 5060, "udp")
    tls_route = [Address.parse("<sips:proxy@10.0.0.7;lr>")]
    assert first_hop(tls_route, URI.parse("sip:alice@10.0.0.8"), udp) == Peer(
        "10.0.0.7", 5061, "tls"
    )
    target = URI.parse("sip:alice@10.0.0.8:5071;transport=tls")
    assert first_hop([], target, udp) == Peer("10.0.0.8", 5071, "tls")
    assert first_hop([], URI.parse("sip:alice@10.0.0.8;transport=tcp"), udp) == udp
    connection = Peer("127.0.0.9", 40000, "tls")  # the caller's own TLS connection
    assert first_hop(tls_route, target, connection) == connection
