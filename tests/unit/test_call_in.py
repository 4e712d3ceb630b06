"""Who may call in (`bridge.conference.callin`), with a chosen clock: peers' networks, digest
users answering our SHA-256 challenge (with our own client, `bridge.sip.auth`), stale nonces,
wrong passwords and realms, and the guest-friendly default."""

from __future__ import annotations

from sipmessage import URI, Request

from bridge.conference.callin import NONCE_TTL_S, CallIn
from bridge.config import PeerDefinition
from bridge.sip.auth import Challenge, Credentials, authorization

PEERS = (
    PeerDefinition("office", networks=("192.0.2.0/24",)),
    PeerDefinition("alice", username="alice", password="wonderland-7"),
)
T0 = 1_700_000_000.0


def invite(auth: str | None = None) -> Request:
    request = Request("INVITE", URI.parse("sip:room@198.51.100.1"))
    if auth is not None:
        request.headers.add("Authorization", auth)
    return request


def answered(gate: CallIn, now: float, password: str = "wonderland-7", realm: str = "") -> str:
    refusal = gate.refusal("203.0.113.9", invite(), now)
    assert refusal is not None and refusal.status == 401
    value = dict(refusal.headers)["WWW-Authenticate"]  # the first: SHA-256
    nonce = value.split('nonce="')[1].split('"')[0]
    challenge = Challenge(realm or gate.realm, nonce, "SHA-256", ("auth",))
    return authorization(challenge, Credentials("alice", password), "INVITE", "sip:room@x")[1]


def test_networks_digest_users_and_the_rest() -> None:
    gate = CallIn(PEERS, allow_guests=False, realm="198.51.100.1")
    assert gate.refusal("192.0.2.77", invite(), T0) is None  # the office's network
    first = gate.refusal("203.0.113.9", invite(), T0)
    assert first is not None and first.status == 401
    assert [v.split("algorithm=")[1].split(",")[0] for _, v in first.headers] == ["SHA-256", "MD5"]
    assert gate.refusal("203.0.113.9", invite(answered(gate, T0)), T0 + 1) is None
    wrong = gate.refusal("203.0.113.9", invite(answered(gate, T0, "guess")), T0 + 1)
    assert wrong is not None and wrong.status == 403
    elsewhere = gate.refusal("203.0.113.9", invite(answered(gate, T0, realm="evil")), T0 + 1)
    assert elsewhere is not None and elsewhere.status == 403
    stale = gate.refusal("203.0.113.9", invite(answered(gate, T0)), T0 + NONCE_TTL_S + 1)
    assert stale is not None and stale.status == 401 and "stale=true" in stale.headers[0][1]
    forged = answered(gate, T0).replace('nonce="', 'nonce="0')
    assert gate.refusal("203.0.113.9", invite(forged), T0 + 1) is not None
    garbage = gate.refusal("203.0.113.9", invite('Digest username="alice", realm'), T0)
    assert garbage is not None and garbage.status == 403


def test_no_digest_users_is_403_and_guests_are_the_default() -> None:
    networks_only = CallIn(PEERS[:1], allow_guests=False, realm="r")
    refused = networks_only.refusal("203.0.113.9", invite(), T0)
    assert refused is not None and refused.status == 403
    assert CallIn((), allow_guests=True, realm="r").refusal("203.0.113.9", invite(), T0) is None
