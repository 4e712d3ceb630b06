"""Serial-number arithmetic for RTP sequence numbers and timestamps (RFC 3550, RFC 1982).

Sequence numbers wrap at 2**16 and timestamps at 2**32, so "newer" and "distance" must be
computed modulo the field size; keeping it in one place stops each caller re-deriving it.
"""

from __future__ import annotations

_U16 = 0x1_0000
_U16_HALF = 0x8000
_U32 = 0x1_0000_0000
_U32_HALF = 0x8000_0000


def uint16_add(a: int, b: int) -> int:
    """Add modulo 2**16 (b may be negative)."""
    return (a + b) & 0xFFFF


def uint16_gt(a: int, b: int) -> bool:
    """True when sequence number `a` is newer than `b` (half-range serial compare)."""
    return a != b and ((a - b) & 0xFFFF) < _U16_HALF


def seq_delta(a: int, b: int) -> int:
    """Signed distance from `b` to `a` in -32768..32767 (positive when `a` is newer)."""
    d = (a - b) & 0xFFFF
    return d - _U16 if d >= _U16_HALF else d


def uint32_add(a: int, b: int) -> int:
    """Add modulo 2**32 (b may be negative): RTP timestamps."""
    return (a + b) & 0xFFFF_FFFF


def uint32_gt(a: int, b: int) -> bool:
    """True when timestamp `a` is newer than `b` (half-range serial compare)."""
    return a != b and ((a - b) & 0xFFFF_FFFF) < _U32_HALF


def ts_delta(a: int, b: int) -> int:
    """Signed distance from timestamp `b` to `a` in -2**31..2**31-1."""
    d = (a - b) & 0xFFFF_FFFF
    return d - _U32 if d >= _U32_HALF else d
