"""A property that is one member's cell of a numpy column, for the views (`ColumnJitter`,
`ColumnVoice`) that stand in for a per-member object while its state lives in columns."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class RowField:
    """`view.name` reads (as `kind`) and, unless `read_only`, writes
    `view.columns.<column>[view.<index>]`."""

    __slots__ = ("column", "index", "kind", "read_only")

    def __init__(
        self, column: str, kind: Callable[[Any], Any], index: str = "slot", read_only: bool = False
    ) -> None:
        self.column = column
        self.kind = kind
        self.index = index
        self.read_only = read_only

    def __get__(self, view: Any, owner: type | None = None) -> Any:
        if view is None:
            return self
        return self.kind(getattr(view.columns, self.column)[getattr(view, self.index)])

    def __set__(self, view: Any, value: Any) -> None:
        if self.read_only:
            raise AttributeError(f"{self.column} is read-only here")
        getattr(view.columns, self.column)[getattr(view, self.index)] = value
