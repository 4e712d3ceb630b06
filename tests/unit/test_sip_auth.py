"""Digest authentication against the RFC examples, hostile header syntax and a trunk's retries."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from sipmessage import Response

from bridge.sip.auth import (
    AuthError,
    Challenge,
    Credentials,
    DigestSession,
    authorization,
    challenges_from,
    pick,
    verify,
)
from bridge.sip.message import parse_message

MUFASA_2617 = Credentials("Mufasa", "Circle Of Life")
MUFASA_7616 = Credentials("Mufasa", "Circle of Life")
NONCE_2617 = "dcd98b7102dd2f0e8b11d0f600bfb0c093"
OPAQUE_2617 = "5ccc069c403ebaf9f0171e9517f40e41"
NONCE_7616 = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
OPAQUE_7616 = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
CNONCE_7616 = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
TRUNK = Credentials("bridge", "s3cret")
INVITE_URI = "sip:+15551234@trunk.example.com"


def params(value: str) -> dict[str, str]:
    """A naive split, good enough for the values we build (no commas inside quotes)."""
    assert value.startswith("Digest ")
    pairs = (part.split("=", 1) for part in value[len("Digest ") :].split(", "))
    return {name: raw.strip('"') for name, raw in pairs}


def challenge_response(
    *challenges: str, code: int = 401, cseq: int = 1, method: str = "INVITE", call_id: str = "c1"
) -> Response:
    header = "Proxy-Authenticate" if code == 407 else "WWW-Authenticate"
    phrase = "Proxy Authentication Required" if code == 407 else "Unauthorized"
    lines = "".join(f"{header}: {value}\r\n" for value in challenges)
    data = (
        f"SIP/2.0 {code} {phrase}\r\n"
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc\r\n"
        "From: <sip:bridge@192.0.2.1>;tag=f1\r\nTo: <sip:+15551234@trunk.example.com>;tag=t1\r\n"
        f"Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n{lines}Content-Length: 0\r\n\r\n"
    ).encode()
    message = parse_message(data)
    assert isinstance(message, Response)
    return message


def answer(session: DigestSession, response: Response, method: str = "INVITE") -> tuple[str, str]:
    header = session.respond(response, method, INVITE_URI)
    assert header is not None
    return header


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# -- RFC examples --------------------------------------------------------------------------------


def test_rfc2617_example() -> None:
    challenge = Challenge.parse(
        f'Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="{NONCE_2617}", '
        f'opaque="{OPAQUE_2617}"',
        proxy=False,
    )
    name, value = authorization(challenge, MUFASA_2617, "GET", "/dir/index.html", cnonce="0a4f113b")
    assert name == "Authorization"
    assert value == (
        f'Digest username="Mufasa", realm="testrealm@host.com", nonce="{NONCE_2617}", '
        'uri="/dir/index.html", response="6629fae49393a05397450978507c4ef1", algorithm=MD5, '
        f'cnonce="0a4f113b", qop=auth, nc=00000001, opaque="{OPAQUE_2617}"'
    )
    assert verify(value, "GET", "Circle Of Life")


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_examples(algorithm: str, expected: str) -> None:
    challenge = Challenge.parse(
        f'Digest\r\n realm="http-auth@example.org",\r\n qop="auth, auth-int",\r\n'
        f" algorithm={algorithm},\r\n"
        f' nonce="{NONCE_7616}",\r\n opaque="{OPAQUE_7616}"',
        proxy=False,
    )
    assert challenge.algorithm == algorithm
    assert challenge.qop == ("auth", "auth-int")
    _, value = authorization(challenge, MUFASA_7616, "GET", "/dir/index.html", cnonce=CNONCE_7616)
    sent = params(value)
    assert sent["response"] == expected
    assert (sent["algorithm"], sent["qop"], sent["nc"]) == (algorithm, "auth", "00000001")
    assert sent["opaque"] == OPAQUE_7616
    assert verify(value, "GET", "Circle of Life")


def test_rfc2069_style_without_qop() -> None:
    challenge = Challenge.parse(
        f'Digest realm="testrealm@host.com", nonce="{NONCE_2617}", opaque="{OPAQUE_2617}"',
        proxy=False,
    )
    assert challenge.qop == ()
    _, value = authorization(
        challenge, Credentials("Mufasa", "CircleOfLife"), "GET", "/dir/index.html"
    )
    sent = params(value)
    # The RFC 2069 §2.4 example's response.
    assert sent["response"] == "1949323746fe6a43ef61f9606e7febea"
    assert not {"cnonce", "qop", "nc"} & sent.keys()
    assert verify(value, "GET", "CircleOfLife")


@pytest.mark.parametrize(("algorithm", "h"), [("MD5-sess", md5), ("SHA-256-sess", sha256)])
def test_sess_variants_fold_the_cnonce_into_ha1(algorithm: str, h: Callable[[str], str]) -> None:
    challenge = Challenge("sip.example.com", "n0nce", algorithm, ("auth",))
    _, value = authorization(challenge, TRUNK, "INVITE", INVITE_URI, nc=3, cnonce="c0ffee")
    ha1 = h(f"{h('bridge:sip.example.com:s3cret')}:n0nce:c0ffee")
    ha2 = h(f"INVITE:{INVITE_URI}")
    assert params(value)["response"] == h(f"{ha1}:n0nce:00000003:c0ffee:auth:{ha2}")
    assert params(value)["nc"] == "00000003"
    assert verify(value, "INVITE", "s3cret")


def test_random_cnonce_when_none_given() -> None:
    challenge = Challenge("r", "n", qop=("auth",))
    first = params(authorization(challenge, TRUNK, "BYE", INVITE_URI)[1])["cnonce"]
    second = params(authorization(challenge, TRUNK, "BYE", INVITE_URI)[1])["cnonce"]
    assert first != second
    assert len(first) == 16 and int(first, 16) >= 0


# -- header grammar ------------------------------------------------------------------------------


def test_parse_handles_quoted_commas_escapes_spaces_and_case() -> None:
    challenge = Challenge.parse(
        'DIGEST REALM = "a, \\"quoted\\" realm" ,  NONCE="x,y" ,, '
        'Algorithm=sha-256-SESS, QOP="AUTH", Opaque="o\\\\p", Stale=TRUE, domain="sip:a sip:b"',
        proxy=True,
    )
    assert challenge == Challenge(
        realm='a, "quoted" realm',
        nonce="x,y",
        algorithm="SHA-256-sess",
        qop=("auth",),
        opaque="o\\p",
        stale=True,
        proxy=True,
    )


def test_parse_defaults() -> None:
    challenge = Challenge.parse('Digest realm="r", nonce="n"', proxy=False)
    assert challenge == Challenge("r", "n", "MD5", (), None, False, False)
    assert challenge.header_name == "Authorization"


def test_quoted_values_round_trip_through_our_header() -> None:
    challenge = Challenge.parse('Digest realm="a \\"b\\", c", nonce="n", qop=auth', proxy=False)
    creds = Credentials('we"ird\\user', "pw")
    _, value = authorization(challenge, creds, "INVITE", INVITE_URI, cnonce="cc")
    assert 'username="we\\"ird\\\\user"' in value
    assert verify(value, "INVITE", "pw")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('Basic realm="r"', "unsupported authentication scheme 'Basic'"),
        ('Digest realm="r"', "lacks nonce"),
        ('Digest nonce="n"', "lacks realm"),
        ('Digest realm="r, nonce="n"', "unterminated quoted string"),
        ('Digest realm="r", realm="s", nonce="n"', "duplicate digest parameter 'realm'"),
        ('Digest realm="r", nonce="n" junk', "malformed digest parameter"),
        ('realm="r", nonce="n"', "expected an authentication scheme"),
        ("", "empty authentication header"),
        ('Digest realm="r", nonce="n", Digest realm="s", nonce="m"', "expected one Digest value"),
    ],
)
def test_parse_errors_are_clear(value: str, message: str) -> None:
    with pytest.raises(AuthError, match=message) as caught:
        Challenge.parse(value, proxy=False)
    assert isinstance(caught.value, ValueError)


def test_challenges_from_reads_every_header_and_skips_other_schemes() -> None:
    response = challenge_response(
        'Digest realm="r", nonce="n1", algorithm=MD5, qop="auth"',
        'Basic realm="r", Digest realm="r", nonce="n2", algorithm=SHA-256, qop="auth"',
        "Negotiate abc==",
    )
    found = challenges_from(response)
    assert [(c.nonce, c.algorithm, c.proxy) for c in found] == [
        ("n1", "MD5", False),
        ("n2", "SHA-256", False),
    ]
    assert pick(found).nonce == "n2"


def test_challenges_from_rejects_a_non_challenge() -> None:
    ok = parse_message(
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa\r\nFrom: <sip:a@b>;tag=1\r\n"
        b"To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
    assert isinstance(ok, Response)
    with pytest.raises(AuthError, match="200"):
        challenges_from(ok)


def test_pick_prefers_sha256_then_qop() -> None:
    md5_auth = Challenge("r", "1", "MD5", ("auth",))
    sha_plain = Challenge("r", "2", "SHA-256")
    sha_auth = Challenge("r", "3", "SHA-256", ("auth-int", "auth"))
    sha_int = Challenge("r", "4", "SHA-256", ("auth-int",))
    odd = Challenge("r", "5", "SHA-512-256", ("auth",))
    assert pick([md5_auth, sha_plain, sha_auth, sha_int, odd]) is sha_auth
    assert pick([md5_auth, sha_plain]) is sha_plain
    assert pick([Challenge("r", "6"), md5_auth]) is md5_auth


@pytest.mark.parametrize(
    ("challenges", "message"),
    [
        ([Challenge("r", "n", "SHA-512-256")], "unsupported digest algorithm 'SHA-512-256'"),
        ([Challenge("r", "n", qop=("auth-int",))], "unsupported qop 'auth-int': only auth"),
        ([Challenge("r", "n", "MD5-sess")], "MD5-sess needs qop"),
        ([], "no Digest challenge"),
    ],
)
def test_pick_explains_what_it_cannot_answer(challenges: list[Challenge], message: str) -> None:
    with pytest.raises(AuthError, match=message):
        pick(challenges)


def test_authorization_refuses_what_it_cannot_answer() -> None:
    with pytest.raises(AuthError, match="only auth"):
        authorization(Challenge("r", "n", qop=("auth-int",)), TRUNK, "INVITE", INVITE_URI)
    with pytest.raises(AuthError, match="unsupported digest algorithm 'SHA-1'"):
        authorization(Challenge("r", "n", "SHA-1"), TRUNK, "INVITE", INVITE_URI)
    with pytest.raises(AuthError, match="realm 'other'"):
        authorization(Challenge("r", "n"), Credentials("u", "p", "other"), "INVITE", INVITE_URI)
    with pytest.raises(AuthError, match="nonce count 0"):
        authorization(Challenge("r", "n", qop=("auth",)), TRUNK, "INVITE", INVITE_URI, nc=0)


def test_proxy_challenge_is_answered_with_proxy_authorization() -> None:
    response = challenge_response('Digest realm="proxy", nonce="p1", qop=auth', code=407)
    (challenge,) = challenges_from(response)
    assert challenge.proxy
    name, value = authorization(challenge, TRUNK, "INVITE", INVITE_URI)
    assert name == "Proxy-Authorization"
    assert verify(value, "INVITE", "s3cret")


def test_credentials_hide_the_password_in_repr() -> None:
    assert "s3cret" not in repr(TRUNK)


# -- DigestSession -------------------------------------------------------------------------------


def test_session_answers_and_counts_on_when_the_nonce_is_reused() -> None:
    session = DigestSession(TRUNK)
    challenge = 'Digest realm="trunk", nonce="n1", qop="auth", opaque="op"'
    name, first = answer(session, challenge_response(challenge))
    assert name == "Authorization"
    assert params(first)["nc"] == "00000001"
    assert verify(first, "INVITE", "s3cret")
    # Later the BYE (a new request, CSeq 3) is challenged with the same nonce.
    bye = challenge_response(challenge, cseq=3, method="BYE")
    _, second = answer(session, bye, "BYE")
    assert params(second)["nc"] == "00000002"
    assert params(second)["cnonce"] == params(first)["cnonce"]
    assert verify(second, "BYE", "s3cret")
    assert session.nc == 2


def test_session_gives_up_when_the_retry_is_challenged_again() -> None:
    session = DigestSession(TRUNK)
    challenge = 'Digest realm="trunk", nonce="n1", qop="auth"'
    assert session.respond(challenge_response(challenge, cseq=1), "INVITE", INVITE_URI)
    assert session.respond(challenge_response(challenge, cseq=2), "INVITE", INVITE_URI) is None


def test_session_gives_up_on_a_fresh_nonce_without_stale() -> None:
    # Servers that issue a new nonce with every 401 must not make us loop on a wrong password.
    session = DigestSession(TRUNK)
    assert session.respond(
        challenge_response('Digest realm="trunk", nonce="n1"', cseq=1), "INVITE", INVITE_URI
    )
    again = challenge_response('Digest realm="trunk", nonce="n2"', cseq=2)
    assert session.respond(again, "INVITE", INVITE_URI) is None


def test_session_retries_a_stale_nonce_from_one() -> None:
    session = DigestSession(TRUNK)
    first = challenge_response('Digest realm="trunk", nonce="n1", qop=auth', cseq=1)
    _, value = answer(session, first)
    stale = challenge_response('Digest realm="trunk", nonce="n2", qop=auth, stale=TRUE', cseq=2)
    _, retried = answer(session, stale)
    sent = params(retried)
    assert (sent["nonce"], sent["nc"]) == ("n2", "00000001")
    assert sent["cnonce"] != params(value)["cnonce"]
    assert verify(retried, "INVITE", "s3cret")


def test_session_answers_a_uas_challenge_after_the_proxy_one() -> None:
    session = DigestSession(TRUNK)
    proxy = challenge_response('Digest realm="edge", nonce="p1"', code=407, cseq=1)
    assert answer(session, proxy)[0] == "Proxy-Authorization"
    uas = challenge_response('Digest realm="edge", nonce="u1"', code=401, cseq=2)
    assert answer(session, uas)[0] == "Authorization"


def test_session_gives_up_on_realm_mismatch() -> None:
    session = DigestSession(Credentials("bridge", "s3cret", realm="trunk"))
    other = challenge_response('Digest realm="elsewhere", nonce="n1"')
    assert session.respond(other, "INVITE", INVITE_URI) is None
    both = challenge_response(
        'Digest realm="elsewhere", nonce="n1"', 'Digest realm="trunk", nonce="n2"'
    )
    _, value = answer(session, both)
    assert params(value)["realm"] == "trunk"


@pytest.mark.parametrize(
    "challenge",
    [
        'Digest realm="trunk", nonce="n1", algorithm=SHA-512-256',
        'Digest realm="trunk", nonce="n1", qop="auth-int"',
        'Basic realm="trunk"',
    ],
)
def test_session_gives_up_on_what_it_cannot_answer(challenge: str) -> None:
    session = DigestSession(TRUNK)
    assert session.respond(challenge_response(challenge), "INVITE", INVITE_URI) is None


# -- verify --------------------------------------------------------------------------------------


def test_verify_rejects_a_wrong_password_method_or_tampering() -> None:
    challenge = Challenge("trunk", "n1", "SHA-256", ("auth",))
    _, value = authorization(challenge, TRUNK, "INVITE", INVITE_URI, cnonce="abc")
    assert verify(value, "INVITE", "s3cret")
    assert not verify(value, "INVITE", "wrong")
    assert not verify(value, "BYE", "s3cret")
    assert not verify(value.replace("nc=00000001", "nc=00000002"), "INVITE", "s3cret")


def test_verify_accepts_foreign_spelling() -> None:
    ha1 = md5("alice:r:pw")
    ha2 = md5("REGISTER:sip:r")
    response = md5(f"{ha1}:n:0000000A:cn:auth:{ha2}").upper()
    value = (
        f'digest USERNAME="alice",realm="r",nonce="n",uri="sip:r",qop="auth",nc=0000000A,'
        f'cnonce="cn",response="{response}"'
    )
    assert verify(value, "REGISTER", "pw")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('Digest username="u", realm="r", nonce="n", uri="u"', "lacks response"),
        (
            'Digest username="u", realm="r", nonce="n", uri="u", response="x", qop=auth',
            "lacks cnonce, nc",
        ),
        (
            'Digest username="u", realm="r", nonce="n", uri="u", response="x", qop=auth-int',
            "only auth",
        ),
        (
            'Digest username="u", realm="r", nonce="n", uri="u", response="x", algorithm=SHA-1',
            "unsupported digest algorithm",
        ),
        (
            'Digest username="u", realm="r", nonce="n", uri="u", response="x", qop=auth, '
            'cnonce="c", nc=1',
            "8 hex digits",
        ),
        ("Basic dXNlcjpwdw==", "only Digest"),
    ],
)
def test_verify_raises_on_malformed_credentials(value: str, message: str) -> None:
    with pytest.raises(AuthError, match=message):
        verify(value, "INVITE", "pw")
