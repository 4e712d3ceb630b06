"""Talking detection with hysteresis: one member's (`VoiceActivity`), or many members' at once
(`VoiceColumns`, numpy arrays stepped in one go per tick, each member's `Participant.voice` a
`ColumnVoice` view of its row, so whoever reads or feeds it one member at a time sees the same
state).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bridge.rtp.row_field import RowField

START_FRAMES = 3
STOP_FRAMES = 25


@dataclass(slots=True)
class VoiceActivity:
    """Talking or not, from frame loudness with hysteresis: starts after 60 ms of voice, stops
    after 500 ms without, so a pause between words is not a stop."""

    START_FRAMES = START_FRAMES
    STOP_FRAMES = STOP_FRAMES

    talking: bool = False
    run: int = 0  # consecutive frames disagreeing with `talking`

    def update(self, loud: bool) -> bool:
        """Feed one frame; True when `talking` changed."""
        if loud == self.talking:
            self.run = 0
            return False
        self.run += 1
        if self.run < (self.STOP_FRAMES if self.talking else self.START_FRAMES):
            return False
        self.talking, self.run = loud, 0
        return True


class VoiceColumns:
    """`VoiceActivity` of many members as two arrays: `step` feeds each one frame at once.

    Either `count` rows used as they are, or slots handed out (`attach`) and given back
    (`detach`), so a member keeps its row while others join and leave around it."""

    def __init__(self, count: int = 0) -> None:
        self.talking = np.zeros(count, np.bool_)
        self.run = np.zeros(count, np.int32)
        self._free: list[int] = []

    def attach(self, voice: VoiceActivity | ColumnVoice) -> ColumnVoice:
        """A free row holding `voice`'s state from now on, and its view."""
        if not self._free:
            size = self.talking.size
            grown = max(64, 2 * size)
            self.talking = np.concatenate([self.talking, np.zeros(grown - size, np.bool_)])
            self.run = np.concatenate([self.run, np.zeros(grown - size, np.int32)])
            self._free = list(range(grown - 1, size - 1, -1))  # the lowest first
        row = self._free.pop()
        self.talking[row], self.run[row] = voice.talking, voice.run
        return ColumnVoice(self, row)

    def owns(self, voice: VoiceActivity | ColumnVoice) -> bool:
        """Whether `voice` is a view of one of these rows."""
        return isinstance(voice, ColumnVoice) and voice.columns is self

    def detach(self, view: ColumnVoice) -> VoiceActivity:
        """The view's state as a plain `VoiceActivity`; its row is free again."""
        plain = view.plain()
        self._free.append(view.row)
        return plain

    def step(self, loud: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Feed each member one frame (`loud`, bool per row, or per member of `rows`); the
        positions in `loud` whose `talking` changed, in order. The same rule as
        `VoiceActivity.update`, row by row."""
        if rows is None:
            talking, run = self.talking, self.run
        else:
            talking, run = self.talking[rows], self.run[rows]
        disagree = loud != talking
        np.add(run, 1, out=run)
        np.multiply(run, disagree, out=run)  # agreeing rows start again from 0
        flip = run >= np.where(talking, np.int32(STOP_FRAMES), np.int32(START_FRAMES))
        changed = np.flatnonzero(flip)  # run >= 3 only where disagreeing
        if changed.size:
            talking[changed] ^= True
            run[changed] = 0
        if rows is not None:
            self.run[rows] = run
            if changed.size:
                self.talking[rows[changed]] = talking[changed]
        return changed


class ColumnVoice:
    """One member's `VoiceActivity` as a row of `VoiceColumns`: reads, writes and `update`
    act on the row. Pickles (a hand-over) as the plain `VoiceActivity` it stands for."""

    __slots__ = ("columns", "row")

    def __init__(self, columns: VoiceColumns, row: int) -> None:
        self.columns = columns
        self.row = row

    talking = RowField("talking", bool, index="row")
    run = RowField("run", int, index="row")

    def plain(self) -> VoiceActivity:
        return VoiceActivity(self.talking, self.run)

    def update(self, loud: bool) -> bool:
        """As `VoiceActivity.update`, on the row (a room ticked one by one meanwhile)."""
        voice = self.plain()
        changed = voice.update(loud)
        self.talking, self.run = voice.talking, voice.run
        return changed

    def __reduce__(self) -> tuple[type[VoiceActivity], tuple[bool, int]]:
        return VoiceActivity, (self.talking, self.run)

    def __repr__(self) -> str:
        return f"ColumnVoice(talking={self.talking}, run={self.run})"
