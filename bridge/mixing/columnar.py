"""Members whose jitter buffer, loss count and packets in live in `JitterColumns`.

A shared-port member's `Participant.jitter` and `.loss` become views of its slot (the per-packet
and per-tick work is done for all members at once by `push_batch` and `pop_batch`); everything
else of the participant stays as it is. `counters.packets_in` and `last_rtp` are counted in the
columns too and folded into the participant by `fold` (before its stats are read) and on
`detach`, which also gives it back a `JitterBuffer` and a `StreamLoss` with the slot's state.
"""

from __future__ import annotations

from bridge.mixing.participant import Participant
from bridge.rtp.jitter import JitterBuffer
from bridge.rtp.jitter_columns import ColumnJitter, ColumnLoss, JitterColumns
from bridge.rtp.stream_loss import StreamLoss


def attach(columns: JitterColumns, participant: Participant) -> int:
    """Move the participant's jitter buffer and loss count into a slot of `columns`."""
    jitter, loss = participant.jitter, participant.loss
    if isinstance(jitter, ColumnJitter):  # already in columns: into these ones
        if jitter.columns is columns:
            return jitter.slot
        detach(participant)
        jitter, loss = participant.jitter, participant.loss
    assert isinstance(jitter, JitterBuffer) and isinstance(loss, StreamLoss)
    slot = columns.attach(jitter, loss)
    participant.jitter = ColumnJitter(columns, slot, participant.keep_good)
    participant.loss = ColumnLoss(columns, slot)
    return slot


def column_of(participant: Participant) -> ColumnJitter | None:
    jitter = participant.jitter
    return jitter if isinstance(jitter, ColumnJitter) else None


def fold(participant: Participant) -> None:
    """Add the packets counted in the columns since the last fold to the participant's."""
    view = column_of(participant)
    if view is None:
        return
    columns, slot = view.columns, view.slot
    participant.counters.packets_in += int(columns.packets_in[slot])
    columns.packets_in[slot] = 0
    participant.last_rtp = max(participant.last_rtp, float(columns.last_rtp[slot]))


def detach(participant: Participant) -> None:
    """Give the participant back its own jitter buffer and loss count, with the slot's state."""
    view = column_of(participant)
    if view is None:
        return
    fold(participant)
    view.settle()
    participant.jitter, participant.loss = view.columns.detach(view.slot)
