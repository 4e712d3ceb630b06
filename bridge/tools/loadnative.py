"""Which path the load generator's per-packet accounting runs: the compiled one
(`_loadcols.c`, built by the set-up) or numpy's.

Both give the same figures, onsets and audio (`tests/unit/test_loadcols.py`); numpy's stays as
the reference. The compiled one is one loop over a batch's packets instead of a few dozen
numpy calls on small arrays, which at 2,000 calls made the generator cost what the bridge
does. `CONFBRIDGE_NATIVE_LOAD=0` runs numpy's (to compare them, or if the compiled one were
ever in doubt).
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

compiled: ModuleType | None
try:
    from bridge.tools import _loadcols as compiled
except ImportError:  # pragma: no cover - no C compiler at install: numpy's path runs
    compiled = None


def wanted() -> bool:
    """Whether new `Streams` and `ReceiveStats` take the compiled path: built, and not off."""
    return compiled is not None and os.environ.get("CONFBRIDGE_NATIVE_LOAD", "1") != "0"


def module() -> Any:
    """The compiled module (only when `wanted()` or asked for)."""
    if compiled is None:
        raise RuntimeError("bridge.tools._loadcols is not built: run scripts/setup.sh")
    return compiled
