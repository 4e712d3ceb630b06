"""Which per-packet path the shared RTP port runs: the compiled one (`_rtpcols.c`, built by
the set-up) or numpy's, and the table of column addresses the compiled one reads.

Both give the same result (`tests/unit/test_jitter_columns.py`); the compiled one costs one
call per batch instead of dozens of small numpy calls. `CONFBRIDGE_NATIVE_RTP=0` runs numpy's
(to compare them, or if the compiled one were ever in doubt).
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

import numpy as np

compiled: ModuleType | None
try:
    from bridge.rtp import _rtpcols as compiled
except ImportError:  # pragma: no cover - no C compiler at install: numpy's path runs
    compiled = None

COLUMNS = (
    "target", "max_frames", "clock_rate", "ssrc", "next", "last_played", "empty_pops",
    "waiting", "queued", "probation_seq", "jitter", "last_arrival", "last_ts", "jitter_ms",
    "received", "played", "late", "duplicate", "overflow", "ring_seq", "ring_len", "ring",
    "loss_ssrc", "loss_first", "loss_highest", "loss_received", "loss_earlier", "packets_in",
    "last_rtp", "fresh", "last_len", "last_good", "deferred",
)  # fmt: skip
"""The order of the pointers of `Columns` in _rtpcols.c (its constants follow)."""


def wanted() -> bool:
    """Whether new columns take the compiled path: built, and not turned off."""
    return compiled is not None and os.environ.get("CONFBRIDGE_NATIVE_RTP", "1") != "0"


def module() -> Any:
    """The compiled module (only when `wanted()`)."""
    if compiled is None:
        raise RuntimeError("bridge.rtp._rtpcols is not built: run scripts/setup.sh")
    return compiled


def table(owner: object, constants: tuple[int, ...]) -> np.ndarray:
    """The addresses of `owner`'s columns (C-contiguous arrays), then `constants`: what the C
    code reads as its `Columns` struct. Remade whenever the columns are reallocated (they
    grow); the other arrays the calls take are passed as themselves (buffer protocol)."""
    columns = [getattr(owner, name) for name in COLUMNS]
    assert all(column.flags.c_contiguous for column in columns)
    words = [column.__array_interface__["data"][0] for column in columns]
    return np.array(words + list(constants), np.uint64)
