"""Call forwarding of an application's line (Teaming's `services/{service}`), sans-I/O: the
rules in memory (loaded from and saved to the store by the use case) and what an incoming call
to one of the application's conferences gets from them.

The line of a Teaming user (an application) is every one of its conferences: a call to any of
them is a call to the user. `doNotDisturb` sends it to voice mail (`control.voicemail`);
`callForwardingAlways` redirects it (302, Contact: the number); `callForwardingBusy` redirects
it when the conference is full; `callForwardingNotReachable` when the conference cannot take
calls (not started yet, or locked); `callForwardingNoAnswer` when a call to a manual-answer
conference is still ringing after `numberOfRings` rings of RING_S seconds (default
DEFAULT_RINGS). `voiceMessaging` (BroadWorks' name; no number) sends to voice mail the callers
who cannot get in otherwise: a locked or full conference's, and a manual-answer conference's
call still ringing after those rings; a forwarding rule that applies goes first. A number is reached
through `dialout.trunk` (`sip:<number>@<trunk>`), a SIP URI as it is. `ringSplash` is kept
and shown: there is no phone of the user's to ring.
"""

from __future__ import annotations

from collections.abc import Callable

from bridge.control_port import ManualAnswer, Refusal, Reroute
from control.store.records import ForwardingRule

ALWAYS = "callForwardingAlways"
BUSY = "callForwardingBusy"
NO_ANSWER = "callForwardingNoAnswer"
NOT_REACHABLE = "callForwardingNotReachable"
DND = "doNotDisturb"
VOICE_MAIL = "voiceMessaging"
FORWARDING = (ALWAYS, BUSY, NO_ANSWER, NOT_REACHABLE)
SERVICES = (*FORWARDING, DND, VOICE_MAIL)
FORWARDS_NOWHERE = (DND, VOICE_MAIL)
RING_S = 6.0  # one ring cycle
DEFAULT_RINGS = 3


def contact(number: str, trunk: str) -> str:
    """The Contact of a redirect to `number`: a SIP URI as it is, a number at the trunk."""
    if number.startswith(("sip:", "sips:")):
        return f"<{number}>"
    return f"<sip:{number}@{trunk}>"


class Forwarding:
    """Every application's rules, by (application id, service)."""

    def __init__(self, trunk: str) -> None:
        self.trunk = trunk
        self.rules: dict[tuple[str, str], ForwardingRule] = {}

    def load(self, rules: list[ForwardingRule]) -> None:
        for rule in rules:
            self.put(rule)

    def put(self, rule: ForwardingRule) -> None:
        self.rules[(rule.tenant_id, rule.service)] = rule

    def rule(self, tenant_id: str, service: str) -> ForwardingRule:
        """The rule as set, or the inactive default."""
        return self.rules.get((tenant_id, service)) or ForwardingRule(
            tenant_id, service, False, None, False
        )

    def _active(self, tenant_id: str, service: str) -> ForwardingRule | None:
        rule = self.rules.get((tenant_id, service))
        return rule if rule is not None and rule.active else None

    def manual_answer(self, tenant_id: str, voice_mail_room: Callable[[], str]) -> ManualAnswer:
        """How a call to a manual-answer conference rings: until answered; or, with
        callForwardingNoAnswer (else voiceMessaging), until its rings are over, then
        forwarded (else answered into `voice_mail_room()`)."""
        after_s = (self.rule(tenant_id, NO_ANSWER).rings or DEFAULT_RINGS) * RING_S
        rule = self._active(tenant_id, NO_ANSWER)
        if rule is not None and rule.forward_to:
            where = ("Contact", contact(rule.forward_to, self.trunk))
            return ManualAnswer(after_s, Refusal(302, "Moved Temporarily", (where,)))
        if self.voice_mail(tenant_id):
            return ManualAnswer(after_s, Reroute(voice_mail_room()))
        return ManualAnswer()

    def do_not_disturb(self, tenant_id: str) -> bool:
        return self._active(tenant_id, DND) is not None

    def voice_mail(self, tenant_id: str) -> bool:
        return self._active(tenant_id, VOICE_MAIL) is not None

    def decide(self, tenant_id: str, *, full: bool, unreachable: bool) -> Refusal | None:
        """What a call to the application's conference gets, or None to go on as usual."""
        for service, applies in ((ALWAYS, True), (BUSY, full), (NOT_REACHABLE, unreachable)):
            rule = self._active(tenant_id, service)
            if applies and rule is not None and rule.forward_to:
                where = ("Contact", contact(rule.forward_to, self.trunk))
                return Refusal(302, "Moved Temporarily", (where,))
        return None
