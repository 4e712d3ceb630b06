"""RowField: a view's property that is its cell of a numpy column."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from bridge.rtp.row_field import RowField


@dataclass
class Columns:
    level: np.ndarray = field(default_factory=lambda: np.zeros(3, np.int32))
    on: np.ndarray = field(default_factory=lambda: np.zeros(3, np.bool_))


class View:
    level = RowField("level", int)
    on = RowField("on", bool, index="row", read_only=True)

    def __init__(self, columns: Columns, slot: int) -> None:
        self.columns, self.slot, self.row = columns, slot, slot


def test_reads_and_writes_its_own_cell_as_a_python_value() -> None:
    columns = Columns()
    first, last = View(columns, 0), View(columns, 2)
    last.level = 7
    assert columns.level.tolist() == [0, 0, 7]
    assert (first.level, last.level) == (0, 7) and type(last.level) is int
    columns.on[2] = True
    assert (first.on, last.on) == (False, True) and type(last.on) is bool


def test_a_read_only_field_refuses_a_write_and_says_which() -> None:
    view = View(Columns(), 1)
    with pytest.raises(AttributeError, match="on is read-only"):
        view.on = True
    assert View.level.column == "level"  # the class gets the descriptor itself
