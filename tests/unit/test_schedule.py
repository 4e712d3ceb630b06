"""Conference state machine with an injected clock: RESERVED -> HOLDING -> ACTIVE -> COMPLETED,
the one-minute warning and the hang-up at the end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from control.schedule import (
    ConferenceState,
    HangUpEveryone,
    Occupancy,
    PlayWarning,
    StateChanged,
    Timing,
    end_by_api,
    next_deadline,
    step,
)

S = ConferenceState
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
BOOKED = Timing(start_at=T0 + 10 * MINUTE, end_at=T0 + 40 * MINUTE)
EMPTY, ONE, TWO = Occupancy(0), Occupancy(1), Occupancy(2)


def test_reservation_runs_through_every_state() -> None:
    state, actions = step(S.RESERVED, BOOKED, EMPTY, T0, warned=False)
    assert (state, actions) == (S.RESERVED, [])
    assert next_deadline(state, BOOKED, warned=False) == T0 + 10 * MINUTE

    state, actions = step(state, BOOKED, ONE, T0 + 10 * MINUTE, warned=False)
    assert state is S.HOLDING
    assert actions == [StateChanged(S.RESERVED, S.HOLDING, "start time reached")]
    assert next_deadline(state, BOOKED, warned=False) == T0 + 39 * MINUTE

    state, actions = step(state, BOOKED, TWO, T0 + 11 * MINUTE, warned=False)
    assert state is S.ACTIVE
    assert actions == [StateChanged(S.HOLDING, S.ACTIVE, "participants present")]

    state, actions = step(state, BOOKED, ONE, T0 + 20 * MINUTE, warned=False)
    assert state is S.HOLDING  # "ACTIVE: two or more participants": back to waiting
    assert actions == [StateChanged(S.ACTIVE, S.HOLDING, "fewer than two participants")]
    state, actions = step(state, BOOKED, TWO, T0 + 21 * MINUTE, warned=False)
    assert actions == [StateChanged(S.HOLDING, S.ACTIVE, "participants present")]

    state, actions = step(state, BOOKED, TWO, T0 + 39 * MINUTE, warned=False)
    assert (state, actions) == (S.ACTIVE, [PlayWarning()])
    assert next_deadline(state, BOOKED, warned=True) == T0 + 40 * MINUTE

    state, actions = step(state, BOOKED, TWO, T0 + 40 * MINUTE, warned=True)
    assert state is S.COMPLETED
    assert actions == [
        StateChanged(S.ACTIVE, S.COMPLETED, "duration over"),
        HangUpEveryone("duration over"),
    ]
    assert next_deadline(state, BOOKED, warned=True) is None
    assert step(state, BOOKED, TWO, T0 + 50 * MINUTE, warned=True) == (S.COMPLETED, [])


def test_leader_gates_active_and_leaving_puts_the_room_back_on_hold() -> None:
    timing = Timing(start_at=T0, end_at=T0 + 30 * MINUTE, has_leader=True)
    now = T0 + MINUTE
    assert step(S.HOLDING, timing, Occupancy(5, leader_present=False), now, False)[0] is S.HOLDING
    assert step(S.HOLDING, timing, Occupancy(2, leader_present=True), now, False)[0] is S.ACTIVE
    state, actions = step(S.ACTIVE, timing, Occupancy(4, leader_present=False), now, False)
    assert (state, actions) == (S.HOLDING, [StateChanged(S.ACTIVE, S.HOLDING, "leader left")])


def test_end_on_leader_exit_completes_the_conference_when_the_leader_leaves() -> None:
    timing = Timing(has_leader=True, end_on_leader_exit=True)
    now = T0 + MINUTE
    assert step(S.HOLDING, timing, Occupancy(3, leader_present=False), now, False)[0] is S.HOLDING
    assert step(S.HOLDING, timing, Occupancy(2, leader_present=True), now, False)[0] is S.ACTIVE
    state, actions = step(S.ACTIVE, timing, Occupancy(2, leader_present=False), now, False)
    reason = "leader left (end on exit)"
    assert state is S.COMPLETED
    assert actions == [StateChanged(S.ACTIVE, S.COMPLETED, reason), HangUpEveryone(reason)]


def test_unreserved_room_is_active_while_occupied() -> None:
    timing = Timing()
    assert step(S.HOLDING, timing, ONE, T0, False)[0] is S.ACTIVE
    state, actions = step(S.ACTIVE, timing, EMPTY, T0, False)
    assert (state, actions) == (S.HOLDING, [StateChanged(S.ACTIVE, S.HOLDING, "room empty")])
    assert next_deadline(state, timing, False) is None


def test_late_start_skips_straight_to_the_right_state_and_missed_end_completes() -> None:
    # the scheduler was down across the start and the warning: one step catches up
    state, actions = step(S.RESERVED, BOOKED, TWO, T0 + 39 * MINUTE, False)
    assert state is S.ACTIVE
    assert PlayWarning() in actions
    state, actions = step(S.RESERVED, BOOKED, EMPTY, T0 + 2 * 40 * MINUTE, False)
    assert state is S.COMPLETED and HangUpEveryone("duration over") in actions
    assert PlayWarning() not in actions  # no warning for a conference that is already over


def test_extended_duration_moves_the_deadlines() -> None:
    longer = Timing(start_at=BOOKED.start_at, end_at=T0 + 70 * MINUTE)
    assert step(S.ACTIVE, longer, TWO, T0 + 40 * MINUTE, warned=False) == (S.ACTIVE, [])
    assert next_deadline(S.ACTIVE, longer, warned=False) == T0 + 69 * MINUTE


def test_end_by_api_from_any_state() -> None:
    for state in (S.RESERVED, S.HOLDING, S.ACTIVE):
        new, actions = end_by_api(state)
        assert new is S.COMPLETED and HangUpEveryone("ended by API") in actions
    assert end_by_api(S.COMPLETED) == (S.COMPLETED, [])
