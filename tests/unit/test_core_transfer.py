"""Transfers in the conference core, driven like tests/unit/test_conference_core.py: a phone's
REFER moving it into another room of the bridge (or refused with a clear status), and the API's
transfer ending the participant's call once its phone reports the target answered."""

from __future__ import annotations

from sipmessage import URI, Request

from bridge.conference.actions import AcceptTransfer, HangUp, RejectTransfer, Transfer
from bridge.config import Config, RoomsConfig, SipConfig
from bridge.events import ParticipantJoined, ParticipantLeft
from bridge.mixing.backend import MoveParticipant, RemoveParticipant
from bridge.sip.message import encode, make_response
from tests.unit.test_conference_core import (
    HOST,
    PHONE,
    WALL,
    Bridge,
    Out,
    Phone,
    sip_request,
    summary,
)


def joined(bridge: Bridge, user: str) -> Phone:
    """A phone in room "r" whose ACK came after the bridge's 200 (a confirmed dialog)."""
    phone = Phone(bridge, user)
    phone.invite()
    bridge.take()
    phone.ack()
    bridge.take()
    bridge.sent()
    return phone


def refer(bridge: Bridge, phone: Phone, target: str) -> None:
    phone.cseq += 1
    bridge.receive(
        sip_request(
            "REFER",
            f"sip:{phone.room}@{HOST}:5060",
            peer=PHONE,
            from_=f"<sip:{phone.user}@{HOST}>;tag={phone.user}-tag",
            to=f"<sip:{phone.room}@{HOST}>;tag={phone.tag}",
            call_id=phone.call_id,
            cseq=phone.cseq,
            headers=(("Refer-To", f"<{target}>"),),
        ),
        PHONE,
    )


def test_phone_refers_itself_into_another_room_of_the_bridge() -> None:
    bridge = Bridge()
    alice = joined(bridge, "alice")
    refer(bridge, alice, f"sip:other@{HOST}:5060")
    assert bridge.take() == Out(
        ua=[AcceptTransfer(alice.key)],
        media=[MoveParticipant(alice.key, "other")],
        events=[
            ParticipantLeft(WALL, "r", alice.tag, "transferred"),
            ParticipantJoined(WALL, "other", alice.tag, "alice"),
        ],
    )
    sent = bridge.sent()
    assert summary(sent) == ["202 REFER", "NOTIFY", "NOTIFY"]
    assert sent[2].body == b"SIP/2.0 200 OK\r\n"
    assert [leg.caller for leg in bridge.core.members("other")] == ["alice"]


def test_refer_to_an_unknown_room_or_elsewhere_is_refused_and_the_call_stays() -> None:
    closed = Config(
        sip=SipConfig(advertise=HOST), rooms=RoomsConfig(auto_create=False, names=("r",))
    )
    bridge = Bridge(closed)
    alice = joined(bridge, "alice")
    refer(bridge, alice, f"sip:nosuchroom@{HOST}:5060")
    assert bridge.take() == Out(ua=[RejectTransfer(alice.key, 404, "No such room")])
    refer(bridge, alice, "sip:bob@192.0.2.7")
    reason = "The bridge transfers calls only into its own rooms"
    assert bridge.take() == Out(ua=[RejectTransfer(alice.key, 403, reason)])
    assert summary(bridge.sent()) == ["404 REFER", "403 REFER"]
    assert [leg.caller for leg in bridge.core.members("r")] == ["alice"]


def test_api_transfer_ends_the_call_once_the_phone_reports_the_target_answered() -> None:
    bridge = Bridge()
    alice = joined(bridge, "alice")
    target = URI.parse("sip:carol@192.0.2.9")
    bridge.core.transfer(bridge.core.legs[alice.key], target)
    assert bridge.take() == Out(ua=[Transfer(alice.key, target)])
    (sent_refer,) = bridge.sent()
    assert isinstance(sent_refer, Request) and sent_refer.method == "REFER"
    alice_notify = sip_request(
        "NOTIFY",
        f"sip:{alice.room}@{HOST}:5060",
        peer=PHONE,
        from_=f"<sip:{alice.user}@{HOST}>;tag={alice.user}-tag",
        to=f"<sip:{alice.room}@{HOST}>;tag={alice.tag}",
        call_id=alice.call_id,
        cseq=alice.cseq + 1,
        body=b"SIP/2.0 200 OK\r\n",
        content_type="message/sipfrag",
        headers=(("Event", "refer"), ("Subscription-State", "terminated;reason=noresource")),
    )
    bridge.receive(encode(make_response(sent_refer, 202)), PHONE)
    bridge.receive(alice_notify, PHONE)
    out = bridge.take()
    assert out.ua == [HangUp(alice.key, "transferred")]
    assert RemoveParticipant(alice.key) in out.media
