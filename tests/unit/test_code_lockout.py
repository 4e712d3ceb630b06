"""Room-code brute force: the sans-I/O guard's counting, and the conference core refusing a
locked-out source (403), hanging up its code dialogues and publishing CodeLockout, while other
sources and open rooms are untouched."""

from __future__ import annotations

import dataclasses

import pytest

from bridge.conference import lockout
from bridge.conference.lockout import CodeGuard, Lockout, LockoutRules
from bridge.config import SecurityConfig
from bridge.events import CodeLockout
from bridge.mixing.backend import PlayPrompt
from bridge.sip.transaction import Peer
from control.events import EVENT_TYPES, describe
from tests.unit.test_conference_core import CODED, HOST, WALL, Bridge, Phone, config, press, summary

RULES = LockoutRules(attempts=3, window_s=60.0, lock_s=100.0, room_alarm=4)


def test_a_source_is_locked_at_the_threshold_and_free_again_after_the_lock() -> None:
    guard = CodeGuard(RULES)
    assert guard.wrong("10.0.0.1", "r", 0.0) == []
    assert guard.wrong("10.0.0.1", "r", 1.0) == []
    assert guard.wrong("10.0.0.1", "r", 2.0) == [Lockout("source", "10.0.0.1", "r", 3, 102.0)]
    assert guard.refuse("10.0.0.1", 50.0) and not guard.refuse("10.0.0.2", 50.0)
    assert not guard.refuse("10.0.0.1", 102.0)  # the lock is over, and the count starts afresh
    assert guard.wrong("10.0.0.1", "r", 103.0) == []
    assert dataclasses.astuple(guard.counters) == (4, 1, 0, 1)


def test_wrong_codes_older_than_the_window_do_not_count() -> None:
    guard = CodeGuard(RULES)
    for moment in (0.0, 30.0, 61.0, 90.0):  # never 3 within 60 s
        assert guard.wrong("10.0.0.1", "", moment) == []
    assert not guard.locked("10.0.0.1", 90.0)


def test_a_room_guessed_from_many_sources_raises_one_alarm_and_locks_nobody() -> None:
    guard = CodeGuard(RULES)
    crossed = [c for n in range(6) for c in guard.wrong(f"10.0.1.{n}", "r", float(n))]
    assert crossed == [Lockout("room", "10.0.1.3", "r", 4, 63.0)]  # once per window
    assert not any(guard.locked(f"10.0.1.{n}", 6.0) for n in range(6))
    later = [c for n in range(4) for c in guard.wrong(f"10.0.2.{n}", "r", 70.0 + n)]
    assert later == [Lockout("room", "10.0.2.3", "r", 4, 133.0)]  # a new window, a new alarm


def test_memory_stays_bounded_under_a_spoofed_flood(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lockout, "MAX_TRACKED", 100)
    guard = CodeGuard(dataclasses.replace(RULES, room_alarm=0))
    for n in range(1000):
        guard.wrong(f"10.{n // 250}.{n % 250}.1", "", 1.0)
    assert len(guard._by_source) <= 100


def coded_bridge(attempts: int) -> Bridge:
    base = config(CODED)
    security = SecurityConfig(code_lockout_attempts=attempts, code_alarm_attempts=0)
    return Bridge(dataclasses.replace(base, security=security))


def answered(bridge: Bridge, phone: Phone) -> None:
    phone.invite()
    phone.ack()
    bridge.take()
    bridge.sent()


def test_the_core_locks_a_guessing_source_out_and_lets_others_in() -> None:
    bridge = coded_bridge(attempts=4)
    bob = Phone(bridge, "bob")
    answered(bridge, bob)
    press(bridge, bob.key, "1#2#3#")  # three wrong codes: hung up as before, not yet locked
    out = bridge.take()
    assert not [e for e in out.events if isinstance(e, CodeLockout)]
    carol = Phone(bridge, "carol")  # the same source, a new call: one more wrong code
    answered(bridge, carol)
    press(bridge, carol.key, "5#")
    out = bridge.take()
    assert [e for e in out.events if isinstance(e, CodeLockout)] == [
        CodeLockout(WALL, "r", "", "source", HOST, 4, WALL + 900.0)
    ]
    prompts = [m.prompt for m in out.media if isinstance(m, PlayPrompt)]
    assert prompts == ["too_many_attempts"]  # no "wrong code, enter the code" any more
    assert carol.call.key in bridge.core.attention and bridge.core.legs[carol.key].hangup_reason

    dave = Phone(bridge, "dave")  # the locked source calling a coded room: 403 at once
    dave.invite()
    bridge.take()
    assert summary(bridge.sent()) == ["100 INVITE", "403 INVITE"]
    walkin = Phone(bridge, "erin", room="open")  # ...an open room still answers
    walkin.invite()
    bridge.take()
    assert summary(bridge.sent())[-1] == "200 INVITE"
    other = Phone(bridge, "frank", peer=Peer("127.0.0.9", 5070, "udp"))  # another source
    answered(bridge, other)
    press(bridge, other.key, "1234#")
    assert bridge.core.find("r", other.tag) is not None
    assert bridge.core.guard.counters.refused_locked == 1

    bridge.at(901.0)  # the lock is over
    grace = Phone(bridge, "gina")
    grace.invite()
    bridge.take()
    assert summary(bridge.sent())[-1] == "200 INVITE"


def test_the_event_is_published_as_security_code_lockout() -> None:
    event = CodeLockout(WALL, "r", "", "source", "10.0.0.1", 10, WALL + 900.0)
    kind, payload = describe(event) or ("", {})
    assert kind == "security.code_lockout" and kind in EVENT_TYPES
    assert payload == {
        "conference": "r", "time": "2023-11-14T22:13:20Z", "scope": "source",
        "source": "10.0.0.1", "attempts": 10, "until": "2023-11-14T22:28:20Z",
    }  # fmt: skip
