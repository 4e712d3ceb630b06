"""SRTP with SDES keys: the a=crypto offer/answer (`bridge/sip/sdes.py`, through a call leg as
the core uses it), the rtp.srtp policy, and the packet boundary (`bridge/media/srtp.py` in a
participant): a real libsrtp on the other side, forged and replayed packets dropped and
counted, and the keys surviving a media worker's hand-over."""

from __future__ import annotations

import base64
import os
import pickle

import pylibsrtp
import pytest

from bridge.conference.admission import Admission, Plan
from bridge.conference.legs import Leg, negotiated
from bridge.media.g711 import CODECS
from bridge.media.srtp import SUITE_32, SUITE_80, SrtpKeys, SrtpSession
from bridge.mixing.engine import apply_media
from bridge.mixing.participant import Participant
from bridge.mixing.workers.handoff import pack, unpack
from bridge.rtp.jitter import JitterBuffer
from bridge.rtp.packet import RtpSender
from bridge.sip import sdes
from bridge.sip.sdp import SdpError, parse_sdp

KEY = os.urandom(30)
INLINE = base64.b64encode(KEY).decode()


def offer(proto: str = "RTP/SAVP", *cryptos: str) -> bytes:
    lines = [
        "v=0",
        "o=- 1 1 IN IP4 127.0.0.1",
        "s=-",
        "c=IN IP4 127.0.0.1",
        "t=0 0",
        f"m=audio 4000 {proto} 0 8 101",
        "a=rtpmap:101 telephone-event/8000",
        *[f"a=crypto:{c}" for c in cryptos],
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


def leg(mode: str, secure_offer: bool = False) -> Leg:
    return Leg(
        "k", "p", "c", "room", "", "127.0.0.1", Plan(Admission.JOIN, "room"), 20000,
        session_id=1, caller="a", started_at=0.0, host="127.0.0.1", codecs=("PCMU", "PCMA"),
        srtp_mode=mode, secure_offer=secure_offer,
    )  # fmt: skip


def crypto_lines(sdp: bytes) -> list[str]:
    media = parse_sdp(sdp).media[0]
    return [value or "" for name, value in media.attributes if name == "crypto"]


@pytest.mark.parametrize("suite", [SUITE_80, SUITE_32])
def test_a_savp_offer_is_answered_with_our_key_under_its_tag(suite: str) -> None:
    call = leg("optional")
    sdp, session = call.answer(offer("RTP/SAVP", f"7 {suite} inline:{INLINE}|2^31"))
    answer = parse_sdp(sdp)
    assert answer.media[0].proto == "RTP/SAVP"
    [line] = crypto_lines(sdp)
    ours = sdes.parse_crypto(line)
    assert (ours.tag, ours.suite) == (7, suite) and ours.key != KEY
    assert call.srtp == SrtpKeys(suite, local=ours.key, remote=KEY)
    assert negotiated(session, call.srtp).srtp == call.srtp


def test_the_first_usable_crypto_line_wins_and_unusable_ones_are_skipped() -> None:
    call = leg("optional")
    sdp, _ = call.answer(
        offer(
            "RTP/SAVP",
            f"1 AES_256_CM_HMAC_SHA1_80 inline:{base64.b64encode(os.urandom(46)).decode()}",
            f"2 {SUITE_32} inline:{INLINE}",
        )
    )
    assert sdes.parse_crypto(crypto_lines(sdp)[0]).tag == 2


def test_a_plain_offer_gets_plain_rtp_when_srtp_is_optional() -> None:
    call = leg("optional")
    sdp, _ = call.answer(offer("RTP/AVP"))
    assert parse_sdp(sdp).media[0].proto == "RTP/AVP" and not crypto_lines(sdp)
    assert call.srtp is None


@pytest.mark.parametrize(
    ("mode", "body", "message"),
    [
        ("mandatory", offer("RTP/AVP"), "SRTP is required: offer RTP/SAVP"),
        ("off", offer("RTP/SAVP", f"1 {SUITE_80} inline:{INLINE}"), "rtp.srtp = off"),
        ("optional", offer("RTP/SAVP"), "RTP/SAVP offered without a=crypto"),
        (
            "optional",
            offer("RTP/SAVP", f"1 F8_128_HMAC_SHA1_80 inline:{INLINE}"),
            "suite F8_128_HMAC_SHA1_80 is not supported",
        ),
        (
            "optional",
            offer("RTP/SAVP", f"1 {SUITE_80} inline:{base64.b64encode(KEY[:20]).decode()}"),
            f"key is 20 bytes, {SUITE_80} needs 30",
        ),
        ("optional", offer("RTP/SAVP", f"1 {SUITE_80} inline:@@notbase64@@"), "not base64"),
        ("optional", offer("RTP/SAVP", f"1 {SUITE_80} inline:{INLINE}|2^20|1:4"), "MKI"),
        ("optional", offer("RTP/SAVP", f"1 {SUITE_80} inline:{INLINE}|forever"), "lifetime"),
        ("optional", offer("RTP/SAVP", f"1 {SUITE_80} uri:https://x/k"), "not inline"),
        (
            "optional",
            offer("RTP/SAVP", f"1 {SUITE_80} inline:{INLINE} UNENCRYPTED_SRTP"),
            "session parameter UNENCRYPTED_SRTP",
        ),
        ("optional", offer("RTP/SAVP", "garbage"), "malformed a=crypto"),
    ],
)
def test_unusable_offers_get_488_naming_the_problem(mode: str, body: bytes, message: str) -> None:
    with pytest.raises(SdpError) as caught:
        leg(mode).answer(body)
    assert caught.value.status == 488
    assert message in str(caught.value)


def test_our_savp_offer_and_the_peers_answer_settle_the_keys() -> None:
    call = leg("optional", secure_offer=True)
    ours = call.offer()
    offered = [sdes.parse_crypto(line) for line in crypto_lines(ours)]
    assert parse_sdp(ours).media[0].proto == "RTP/SAVP"
    assert [(c.tag, c.suite) for c in offered] == [(1, SUITE_80), (2, SUITE_32)]
    assert crypto_lines(call.offer()) == crypto_lines(ours)  # a re-offer keeps its keys
    theirs = offer("RTP/SAVP", f"2 {SUITE_32} inline:{INLINE}")
    call.take_answer(theirs, "200")
    assert call.srtp == SrtpKeys(SUITE_32, local=offered[1].key, remote=KEY)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (offer("RTP/AVP"), "rejected the audio stream"),
        (offer("RTP/SAVP", f"9 {SUITE_80} inline:{INLINE}"), "tag 9 was not offered"),
        (offer("RTP/SAVP", f"1 {SUITE_32} inline:{INLINE}"), "tag 1 was not offered"),
        (offer("RTP/SAVP"), "0 a=crypto lines"),
    ],
)
def test_a_bad_answer_to_our_savp_offer_is_488(answer: bytes, message: str) -> None:
    call = leg("mandatory", secure_offer=True)
    call.offer()
    with pytest.raises(SdpError, match=message) as caught:
        call.take_answer(answer, "200")
    assert caught.value.status == 488


def test_a_reoffer_with_the_same_key_keeps_ours() -> None:
    call = leg("mandatory")
    body = offer("RTP/SAVP", f"1 {SUITE_80} inline:{INLINE}")
    first, _ = call.answer(body)
    again, _ = call.answer(body)
    assert crypto_lines(first) == crypto_lines(again)
    other = offer("RTP/SAVP", f"1 {SUITE_80} inline:{base64.b64encode(os.urandom(30)).decode()}")
    changed, _ = call.answer(other)
    assert crypto_lines(changed) != crypto_lines(first)


# --------------------------------------------------------------------------- packets


def member(keys: SrtpKeys, sent: list[bytes]) -> Participant:
    participant = Participant(
        id="p", call_key="k", room="r", caller="a", display_name="", codec=CODECS["PCMU"],
        remote=("127.0.0.1", 4000), signalling_host="127.0.0.1",
        send=lambda data, address: sent.append(data), jitter=JitterBuffer(2, 3),
    )  # fmt: skip
    participant.srtp = SrtpSession(keys)
    return participant


def phone_side(keys: SrtpKeys) -> tuple[pylibsrtp.Session, pylibsrtp.Session]:
    """The peer's libsrtp: it protects with its key (our `remote`), unprotects with ours."""
    profile = pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80
    tx = pylibsrtp.Session(
        pylibsrtp.Policy(keys.remote, pylibsrtp.Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile)
    )
    rx = pylibsrtp.Session(
        pylibsrtp.Policy(keys.local, pylibsrtp.Policy.SSRC_ANY_INBOUND, srtp_profile=profile)
    )
    return tx, rx


def test_srtp_in_and_out_of_a_participant_forged_and_replayed_dropped() -> None:
    keys = SrtpKeys(SUITE_80, local=os.urandom(30), remote=os.urandom(30))
    sent: list[bytes] = []
    participant = member(keys, sent)
    tx, rx = phone_side(keys)
    sender = RtpSender(payload_type=0)
    tone = b"\x12\x34" * 80

    first = tx.protect(sender.packet(tone))
    assert tone not in first
    participant.receive_rtp(first, ("127.0.0.1", 4000), 0.0)
    assert participant.counters.packets_in == 1 and participant.latched == ("127.0.0.1", 4000)
    participant.receive_rtp(first, ("127.0.0.1", 4000), 0.02)  # replayed
    forged = bytearray(tx.protect(sender.packet(tone)))
    forged[20] ^= 1
    participant.receive_rtp(bytes(forged), ("127.0.0.1", 4000), 0.04)  # tampered
    plain = sender.packet(tone)
    participant.receive_rtp(plain, ("127.0.0.1", 4000), 0.06)  # plain RTP on an SRTP leg
    assert participant.counters.packets_in == 1
    assert participant.counters.srtp_rejected == 3

    participant.send_payload(tone)
    assert len(sent) == 1 and tone not in sent[0] and len(sent[0]) == 12 + 160 + 10
    assert rx.unprotect(sent[0])[12:] == tone


def test_a_forged_packet_cannot_latch_the_source() -> None:
    keys = SrtpKeys(SUITE_80, local=os.urandom(30), remote=os.urandom(30))
    participant = member(keys, [])
    stranger = pylibsrtp.Session(
        pylibsrtp.Policy(os.urandom(30), pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    )
    participant.receive_rtp(
        stranger.protect(RtpSender(payload_type=0).packet(b"\xff" * 160)), ("127.0.0.1", 9), 0.0
    )
    assert participant.latched is None and participant.counters.srtp_rejected == 1


def test_the_keys_travel_in_the_hand_over_and_the_worker_makes_its_own_contexts() -> None:
    keys = SrtpKeys(SUITE_80, local=os.urandom(30), remote=os.urandom(30))
    participant = member(keys, [])
    tx, rx = phone_side(keys)
    sender = RtpSender(payload_type=0)
    participant.receive_rtp(tx.protect(sender.packet(b"\x00" * 160)), ("127.0.0.1", 4000), 0.0)
    participant.send_payload(b"\x00" * 160)  # contexts exist now; they must not travel
    moved = unpack(pack(participant))
    sent: list[bytes] = []
    moved.send = lambda data, address: sent.append(data)
    assert moved.srtp is not None and moved.srtp.keys == keys and moved.srtp._tx is None
    moved.receive_rtp(tx.protect(sender.packet(b"\x01" * 160)), ("127.0.0.1", 4000), 0.02)
    assert moved.counters.packets_in == 2 and moved.counters.srtp_rejected == 0
    moved.send_payload(b"\x02" * 160)
    assert rx.unprotect(sent[0])[12:] == b"\x02" * 160


def test_update_media_changes_or_drops_the_session() -> None:
    keys = SrtpKeys(SUITE_80, local=os.urandom(30), remote=os.urandom(30))
    call = leg("optional")
    _, session = call.answer(offer("RTP/AVP"))
    participant = member(keys, [])
    kept = participant.srtp
    apply_media(participant, negotiated(session, keys))
    assert participant.srtp is kept  # same keys: same contexts
    new = SrtpKeys(SUITE_32, local=os.urandom(30), remote=os.urandom(30))
    apply_media(participant, negotiated(session, new))
    assert participant.srtp is not kept and participant.srtp.keys == new
    apply_media(participant, negotiated(session))
    assert participant.srtp is None


def test_keys_never_show_in_logs() -> None:
    keys = SrtpKeys(SUITE_80, local=KEY, remote=KEY)
    assert INLINE not in repr(keys) and str(KEY) not in repr(keys)


def test_srtcp_is_authenticated_and_ignored_and_stun_is_not_srtp() -> None:
    keys = SrtpKeys(SUITE_80, local=os.urandom(30), remote=os.urandom(30))
    participant = member(keys, [])
    tx, _ = phone_side(keys)
    receiver_report = bytes([0x80, 201, 0, 1]) + (1234).to_bytes(4, "big")
    participant.receive_rtp(tx.protect_rtcp(receiver_report), ("127.0.0.1", 4000), 0.0)
    assert participant.counters.srtp_rejected == 0 and participant.counters.packets_in == 0
    forged = bytearray(tx.protect_rtcp(receiver_report))
    forged[-1] ^= 1
    participant.receive_rtp(bytes(forged), ("127.0.0.1", 4000), 0.0)
    assert participant.counters.srtp_rejected == 1
    stun = bytes.fromhex("000100002112a442") + os.urandom(12)
    participant.receive_rtp(stun, ("127.0.0.1", 5000), 0.0)
    assert participant.counters.bad_packets == 1 and participant.counters.srtp_rejected == 1
    assert participant.latched == ("127.0.0.1", 4000)  # the SRTCP latched; STUN never does


def test_a_hand_over_after_the_sequence_numbers_wrapped_keeps_both_directions() -> None:
    """70,000 packets each way (the rollover counter is 1), then a hand-over: the new contexts
    are walked to the stream's index, so the peer, whose contexts never moved, still agrees."""
    keys = SrtpKeys(SUITE_32, local=os.urandom(30), remote=os.urandom(30))
    profile = pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32
    peer_tx = pylibsrtp.Session(
        pylibsrtp.Policy(keys.remote, pylibsrtp.Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile)
    )
    peer_rx = pylibsrtp.Session(
        pylibsrtp.Policy(keys.local, pylibsrtp.Policy.SSRC_ANY_INBOUND, srtp_profile=profile)
    )
    session = SrtpSession(keys)
    ours, theirs = RtpSender(payload_type=0), RtpSender(payload_type=0)
    ours.sequence = theirs.sequence = 60_000  # the wrap comes sooner
    for _ in range(10_000):
        assert peer_rx.unprotect(session.protect(ours.packet(b"\x01" * 160)))
        assert session.unprotect(peer_tx.protect(theirs.packet(b"\x02" * 160))) is not None
    assert (session.sent.roc, session.received.roc) == (1, 1)
    replay = peer_tx.protect(theirs.packet(b"\x02" * 160))
    assert session.unprotect(replay) is not None

    moved = pickle.loads(pickle.dumps(session))
    assert moved._tx is None and moved._rx is None
    assert peer_rx.unprotect(moved.protect(ours.packet(b"\x03" * 160)))[12:] == b"\x03" * 160
    plain = moved.unprotect(peer_tx.protect(theirs.packet(b"\x04" * 160)))
    assert plain is not None and plain[12:] == b"\x04" * 160
    assert moved.unprotect(replay) is None  # the packet before the move is still a replay
