"""Conference states as the Aculab document names them, sans-I/O: times and occupancy in, the
next state, the next deadline and the actions out. The asyncio scheduler only sleeps until the
deadline and applies the actions; tests drive this with chosen `now` values.

RESERVED  booked, start in the future: callers get 486 (or the divert target)
HOLDING   start reached, but fewer than two callers, or the leader is missing: callers wait,
          not hearing each other; a reservation goes back to HOLDING whenever that is so again
ACTIVE    two or more callers, the leader among them when one is set (the document's "two or
          more participants, including the leader"; an unreserved room, which has no start to
          wait for, is ACTIVE while anyone is in it)
COMPLETED duration over, or ended by the API: everyone is hung up; terminal
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

WARNING_BEFORE_END = timedelta(minutes=1)


class ConferenceState(enum.StrEnum):
    RESERVED = "RESERVED"
    HOLDING = "HOLDING"
    ACTIVE = "ACTIVE"
    COMPLETED = "COMPLETED"


@dataclass(frozen=True)
class Timing:
    """When a conference runs. No `start_at`: unreserved (runs from creation); no `end_at`:
    open-ended."""

    start_at: datetime | None = None
    end_at: datetime | None = None
    has_leader: bool = False
    end_on_leader_exit: bool = False  # the leader leaving an ACTIVE conference ends it

    @property
    def reserved(self) -> bool:
        return self.start_at is not None

    def warn_at(self) -> datetime | None:
        return None if self.end_at is None else self.end_at - WARNING_BEFORE_END


@dataclass(frozen=True)
class Occupancy:
    participants: int = 0
    leader_present: bool = False


class Action:
    """Something the scheduler must do after a step."""


@dataclass(frozen=True)
class StateChanged(Action):
    old: ConferenceState
    new: ConferenceState
    reason: str


@dataclass(frozen=True)
class PlayWarning(Action):
    """One minute left: every participant hears the warning tone."""


@dataclass(frozen=True)
class HangUpEveryone(Action):
    reason: str


def next_state(
    state: ConferenceState, timing: Timing, occupancy: Occupancy, now: datetime
) -> tuple[ConferenceState, str]:
    """The state at `now`, and why it differs (empty when unchanged)."""
    if state is ConferenceState.COMPLETED:
        return state, ""
    if timing.end_at is not None and now >= timing.end_at:
        return ConferenceState.COMPLETED, "duration over"
    if timing.start_at is not None and now < timing.start_at:
        return ConferenceState.RESERVED, "" if state is ConferenceState.RESERVED else "rescheduled"
    leader_ok = not timing.has_leader or occupancy.leader_present
    if timing.end_on_leader_exit and state is ConferenceState.ACTIVE and not leader_ok:
        return ConferenceState.COMPLETED, "leader left (end on exit)"
    needed = 2 if timing.reserved else 1
    if leader_ok and occupancy.participants >= needed:
        wanted = ConferenceState.ACTIVE
    else:
        wanted = ConferenceState.HOLDING
    if wanted is state:
        return state, ""
    if wanted is ConferenceState.ACTIVE:
        return wanted, "participants present"
    if state is ConferenceState.RESERVED:
        return wanted, "start time reached"
    if not leader_ok:
        return wanted, "leader left"
    return wanted, "room empty" if occupancy.participants == 0 else "fewer than two participants"


def step(
    state: ConferenceState,
    timing: Timing,
    occupancy: Occupancy,
    now: datetime,
    warned: bool,
) -> tuple[ConferenceState, list[Action]]:
    """Advance one conference to `now`: its new state and what to do about it."""
    new, reason = next_state(state, timing, occupancy, now)
    actions: list[Action] = []
    warn_at = timing.warn_at()
    if (
        not warned
        and new in (ConferenceState.HOLDING, ConferenceState.ACTIVE)
        and warn_at is not None
        and now >= warn_at
    ):
        actions.append(PlayWarning())
    if new is not state:
        actions.append(StateChanged(state, new, reason))
        if new is ConferenceState.COMPLETED:
            actions.append(HangUpEveryone(reason))
    return new, actions


def end_by_api(state: ConferenceState) -> tuple[ConferenceState, list[Action]]:
    """The API ends a conference at once, whatever its state."""
    if state is ConferenceState.COMPLETED:
        return state, []
    reason = "ended by API"
    return ConferenceState.COMPLETED, [
        StateChanged(state, ConferenceState.COMPLETED, reason),
        HangUpEveryone(reason),
    ]


def next_deadline(state: ConferenceState, timing: Timing, warned: bool) -> datetime | None:
    """When `step` must run again regardless of callers coming and going."""
    if state is ConferenceState.COMPLETED:
        return None
    if state is ConferenceState.RESERVED:
        return timing.start_at
    warn_at = timing.warn_at()
    if not warned and warn_at is not None:
        return warn_at
    return timing.end_at
