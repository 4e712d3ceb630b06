"""Who may join a room, and the room-code dialogue for those who must enter one (sans-I/O).

`admission` decides from the room's access mode and the caller's number; `CodeEntry` collects a
code ended by # with a limited number of attempts and a per-attempt timeout, returning actions
(prompts to play, the room to admit to, a refusal) for the service to carry out.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from bridge.config import RoomDefinition

MAX_CODE_LENGTH = 32


class Admission(enum.Enum):
    JOIN = "join"
    ASK_CODE = "ask_code"
    REFUSE = "refuse"
    CONFIRM = "confirm"  # a callee we dialled: "press # to join"
    ANNOUNCE = "announce"  # hear one prompt, then the bridge hangs up


def admission(room: RoomDefinition | None, caller: str) -> Admission:
    """Access modes of the click-to-conf documents: none, room, caller, room+caller."""
    if room is None or room.access == "none":
        return Admission.JOIN
    listed = caller in room.callers
    if room.access == "caller":
        return Admission.JOIN if listed else Admission.REFUSE
    if room.access == "room+caller" and listed:
        return Admission.JOIN
    return Admission.ASK_CODE


class IvrAction:
    """Base of what the code dialogue asks the service to do."""


@dataclass(frozen=True)
class Play(IvrAction):
    prompt: str


@dataclass(frozen=True)
class Admit(IvrAction):
    room: str


@dataclass(frozen=True)
class WrongCode(IvrAction):
    """A wrong (or timed-out) code: counted against the caller's source and the room."""

    reason: str


@dataclass(frozen=True)
class Refuse(IvrAction):
    """Hang up once the prompts queued before it have played."""

    reason: str


class CodeEntry:
    """Collects a room code ended by #; `check(code)` names the room it opens, or None."""

    def __init__(
        self, check: Callable[[str], str | None], attempts: int = 3, timeout: float = 15.0
    ) -> None:
        self.check = check
        self.attempts_left = attempts
        self.timeout = timeout
        self.keys = ""
        self.deadline = float("inf")
        self.done = False

    def start(self, now: float) -> list[IvrAction]:
        self.deadline = now + self.timeout
        return [Play("enter_code")]

    def press(self, digit: str, now: float) -> list[IvrAction]:
        if self.done:
            return []
        self.deadline = now + self.timeout
        if digit == "#":
            code, self.keys = self.keys, ""
            room = self.check(code) if code else None
            if room is not None:
                self.done = True
                return [Admit(room)]
            return self._wrong("wrong code")
        if digit == "*":
            self.keys = ""  # start the code again
        elif len(self.keys) < MAX_CODE_LENGTH:
            self.keys += digit
        return []

    def tick(self, now: float) -> list[IvrAction]:
        """A code not finished within the timeout counts as a wrong attempt."""
        if self.done or now < self.deadline:
            return []
        self.keys = ""
        self.deadline = now + self.timeout
        return self._wrong("code timeout")

    def _wrong(self, reason: str) -> list[IvrAction]:
        self.attempts_left -= 1
        if self.attempts_left <= 0:
            self.done = True
            return [WrongCode(reason), Play("too_many_attempts"), Refuse(reason)]
        return [WrongCode(reason), Play("wrong_code"), Play("enter_code")]


class PoundToJoin:
    """"Press # to join" for a callee the conference dialled: # admits to `room`; no # within
    `timeout` hangs up (the call counts as unanswered). The prompt repeats every `repeat` s."""

    def __init__(self, room: str, timeout: float = 15.0, repeat: float = 5.0) -> None:
        self.room = room
        self.timeout = timeout
        self.repeat = repeat
        self.deadline = float("inf")
        self.next_prompt = float("inf")
        self.done = False

    def start(self, now: float) -> list[IvrAction]:
        self.deadline = now + self.timeout
        self.next_prompt = now + self.repeat
        return [Play("press_pound_to_join")]

    def press(self, digit: str, now: float) -> list[IvrAction]:
        if self.done or digit != "#":
            return []
        self.done = True
        return [Admit(self.room)]

    def tick(self, now: float) -> list[IvrAction]:
        if self.done:
            return []
        if now >= self.deadline:
            self.done = True
            return [Play("goodbye"), Refuse("not confirmed")]
        if now >= self.next_prompt:
            self.next_prompt = now + self.repeat
            return [Play("press_pound_to_join")]
        return []
