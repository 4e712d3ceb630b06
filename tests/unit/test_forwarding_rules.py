"""What a call to a manual-answer conference gets from the application's rules (sans-I/O), and
how a voice-mail room names its application."""

from __future__ import annotations

from bridge.control_port import ManualAnswer, Refusal, Reroute
from control.forwarding import DEFAULT_RINGS, NO_ANSWER, RING_S, VOICE_MAIL, Forwarding
from control.store.records import ForwardingRule
from control.voicemail import VoiceMail, is_voice_mail_room, tenant_of


def rules(*rules: ForwardingRule) -> Forwarding:
    forwarding = Forwarding("trunk.example:5060")
    forwarding.load(list(rules))
    return forwarding


def room() -> str:
    return "vm.app1.abc"


def test_without_rules_a_call_rings_until_answered() -> None:
    assert rules().manual_answer("app1", room) == ManualAnswer()


def test_voice_messaging_takes_the_call_after_the_rings() -> None:
    on = ForwardingRule("app1", VOICE_MAIL, True, None, False)
    assert rules(on).manual_answer("app1", room) == ManualAnswer(
        DEFAULT_RINGS * RING_S, Reroute("vm.app1.abc")
    )
    rings = ForwardingRule("app1", NO_ANSWER, False, None, False, 1)  # inactive: rings only
    assert rules(on, rings).manual_answer("app1", room).after_s == RING_S
    assert rules(on).manual_answer("other", room) == ManualAnswer()  # per application


def test_no_answer_forwarding_goes_before_voice_mail() -> None:
    on = ForwardingRule("app1", VOICE_MAIL, True, None, False)
    forward = ForwardingRule("app1", NO_ANSWER, True, "+4930", False, 2)
    decided = rules(on, forward).manual_answer("app1", room)
    assert decided.after_s == 2 * RING_S
    assert isinstance(decided.then, Refusal) and decided.then.status == 302
    assert decided.then.headers == (("Contact", "<sip:+4930@trunk.example:5060>"),)


def test_voice_mail_rooms_name_their_application() -> None:
    made = VoiceMail.room_for("0123abcd")
    assert is_voice_mail_room(made) and tenant_of(made) == "0123abcd"
    assert VoiceMail.room_for("0123abcd") != made  # one room per call
    assert tenant_of("desk") is None and tenant_of("vm.") is None and tenant_of("vm.x") is None
