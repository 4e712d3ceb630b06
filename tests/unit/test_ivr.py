"""Access decisions, the room-code dialogue and the keypad menu, driven with digits and times."""

from __future__ import annotations

from bridge.conference.ivr import Admission, Admit, CodeEntry, Play, Refuse, WrongCode, admission
from bridge.conference.keypad import Keypad, MenuAction
from bridge.config import RoomDefinition


def test_admission_by_access_mode() -> None:
    listed = ("+4411", "alice")
    assert admission(None, "x") is Admission.JOIN
    assert admission(RoomDefinition("r"), "x") is Admission.JOIN
    room = RoomDefinition("r", access="room", code="12")
    assert admission(room, "alice") is Admission.ASK_CODE
    caller = RoomDefinition("r", access="caller", callers=listed)
    assert admission(caller, "alice") is Admission.JOIN
    assert admission(caller, "bob") is Admission.REFUSE
    both = RoomDefinition("r", access="room+caller", code="12", callers=listed)
    assert admission(both, "+4411") is Admission.JOIN
    assert admission(both, "bob") is Admission.ASK_CODE


def test_code_entry_right_code_after_a_wrong_one() -> None:
    entry = CodeEntry(lambda code: "sales" if code == "4711" else None, attempts=3, timeout=10)
    assert entry.start(0.0) == [Play("enter_code")]
    for digit in "99#":
        actions = entry.press(digit, 1.0)
    assert actions == [WrongCode("wrong code"), Play("wrong_code"), Play("enter_code")]
    assert [entry.press(d, 2.0) for d in "12*"] == [[], [], []]  # * starts the code again
    assert [a for d in "4711#" for a in entry.press(d, 3.0)] == [Admit("sales")]
    assert entry.press("1", 4.0) == []  # done: later digits are the menu's


def test_three_wrong_codes_or_timeouts_refuse() -> None:
    entry = CodeEntry(lambda code: None, attempts=3, timeout=10)
    entry.start(0.0)
    wrong = [WrongCode("wrong code"), Play("wrong_code"), Play("enter_code")]
    assert entry.press("#", 1.0) == wrong
    assert entry.tick(5.0) == []
    timed_out = [WrongCode("code timeout"), Play("wrong_code"), Play("enter_code")]
    assert entry.tick(11.5) == timed_out
    assert [a for d in "1#" for a in entry.press(d, 12.0)] == [
        WrongCode("wrong code"),
        Play("too_many_attempts"),
        Refuse("wrong code"),
    ]
    assert entry.tick(100.0) == [] and entry.press("#", 100.0) == []


def test_keypad_single_keys_and_sequences() -> None:
    pad = Keypad({"1": MenuAction.TOGGLE_MUTE, "*8": MenuAction.LEAVE, "6": MenuAction.VOLUME_UP})
    assert pad.press("1", 0.0) is MenuAction.TOGGLE_MUTE
    assert pad.press("*", 1.0) is None
    assert pad.press("8", 1.5) is MenuAction.LEAVE
    assert pad.press("*", 2.0) is None
    assert pad.press("8", 5.0) is None  # the sequence timed out: a lone 8 is not bound
    assert pad.press("*", 6.0) is None
    assert pad.press("6", 6.5) is MenuAction.VOLUME_UP  # not a continuation: taken alone
    assert pad.press("9", 7.0) is None
