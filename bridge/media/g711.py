"""G.711 mu-law and A-law by lookup table, bit-exact with the ITU-T G.191 reference code.

Why tables: one numpy fancy-index per frame costs well under a microsecond, where a per-sample
Python codec would dominate the mixer tick. The tables are built once, vectorised, from the
G.191 `g711.c` algorithms (`ulaw_compress`/`ulaw_expand`, `alaw_compress`/`alaw_expand`).

Encoder tables are indexed by the int16 sample reinterpreted as uint16
(`LINEAR_TO_ULAW[samples.view(np.uint16)]`), so encoding a whole (n, 160) room in one call works
too. Negative samples are folded with one's complement, as in G.191; FFmpeg's `pcm_mulaw` and
`pcm_alaw` encoders (and so PyAV) fold with two's complement instead, which puts a handful of
negative inputs on the other side of a decision level (see tests/unit/test_g711.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

FRAME_SAMPLES = 160  # 20 ms at 8000 Hz


def _ulaw_expand_table() -> np.ndarray:
    code = np.arange(256, dtype=np.int32)
    inverted = ~code & 0xFF
    exponent = (inverted >> 4) & 0x07
    mantissa = inverted & 0x0F
    step = 4 << (exponent + 1)
    magnitude = (0x80 << exponent) + step * mantissa + step // 2 - 4 * 33
    return np.where(code < 0x80, -magnitude, magnitude).astype(np.int16)


def _alaw_expand_table() -> np.ndarray:
    code = np.arange(256, dtype=np.int32)
    folded = (code ^ 0x55) & 0x7F
    exponent = folded >> 4
    mantissa = (folded & 0x0F) + np.where(exponent > 0, 16, 0)
    mantissa = (mantissa << 4) + 8
    magnitude = np.where(exponent > 1, mantissa << np.maximum(exponent - 1, 0), mantissa)
    return np.where(code > 127, magnitude, -magnitude).astype(np.int16)


def _linear_inputs() -> np.ndarray:
    """Every int16 value, ordered by its uint16 bit pattern (the encoder tables' index)."""
    return np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.int16).astype(np.int32)


def _ulaw_compress_table() -> np.ndarray:
    linear = _linear_inputs()
    absno = np.where(linear < 0, (~linear) >> 2, linear >> 2) + 33
    absno = np.minimum(absno, 0x1FFF)
    segment = np.ones_like(absno)
    rest = absno >> 6
    while np.any(rest):
        segment += rest != 0
        rest >>= 1
    high = 0x08 - segment
    low = 0x0F - ((absno >> segment) & 0x0F)
    code = (high << 4) | low
    return np.where(linear >= 0, code | 0x80, code).astype(np.uint8)


def _alaw_compress_table() -> np.ndarray:
    linear = _linear_inputs()
    ix = np.where(linear < 0, (~linear) >> 4, linear >> 4)
    exponent = np.zeros_like(ix)
    shifted = ix.copy()
    big = ix > 15
    exponent[big] = 1
    while np.any(big & (shifted > 31)):
        over = big & (shifted > 31)
        shifted[over] >>= 1
        exponent[over] += 1
    code = np.where(big, (shifted - 16) + (exponent << 4), ix)
    code = np.where(linear >= 0, code | 0x80, code)
    return (code ^ 0x55).astype(np.uint8)


ULAW_TO_LINEAR: np.ndarray = _ulaw_expand_table()
ALAW_TO_LINEAR: np.ndarray = _alaw_expand_table()
LINEAR_TO_ULAW: np.ndarray = _ulaw_compress_table()
LINEAR_TO_ALAW: np.ndarray = _alaw_compress_table()
for _table in (ULAW_TO_LINEAR, ALAW_TO_LINEAR, LINEAR_TO_ULAW, LINEAR_TO_ALAW):
    _table.flags.writeable = False


def _codes(payload: bytes) -> np.ndarray:
    return np.frombuffer(payload, dtype=np.uint8)


def _as_uint16(samples: np.ndarray) -> np.ndarray:
    if samples.dtype != np.int16:
        raise TypeError(f"G.711 encodes int16 samples, got {samples.dtype}")
    return samples.view(np.uint16)


def ulaw_decode(payload: bytes) -> np.ndarray:
    """mu-law bytes to int16 samples (a new array)."""
    return ULAW_TO_LINEAR[_codes(payload)]


def alaw_decode(payload: bytes) -> np.ndarray:
    """A-law bytes to int16 samples (a new array)."""
    return ALAW_TO_LINEAR[_codes(payload)]


def ulaw_encode(samples: np.ndarray) -> bytes:
    """int16 samples (any shape, C order) to mu-law bytes."""
    return LINEAR_TO_ULAW.take(_as_uint16(samples)).tobytes()


def alaw_encode(samples: np.ndarray) -> bytes:
    """int16 samples (any shape, C order) to A-law bytes."""
    return LINEAR_TO_ALAW.take(_as_uint16(samples)).tobytes()


def _decode_into(table: np.ndarray, payload: bytes, out: np.ndarray) -> int:
    count = len(payload)
    if count == out.shape[0]:  # the usual 20 ms frame: one call
        table.take(_codes(payload), out=out)
        return count
    count = min(count, out.shape[0])
    table.take(_codes(payload)[:count], out=out[:count])
    out[count:] = 0
    return count


def ulaw_decode_into(payload: bytes, out: np.ndarray) -> int:
    """Decode into a preallocated int16 row (e.g. a room's frame slot).

    Writes min(len(payload), len(out)) samples and zero-fills the rest, so a short or long
    packet still yields exactly one frame; returns the number of samples decoded.
    """
    return _decode_into(ULAW_TO_LINEAR, payload, out)


def alaw_decode_into(payload: bytes, out: np.ndarray) -> int:
    """A-law twin of `ulaw_decode_into`."""
    return _decode_into(ALAW_TO_LINEAR, payload, out)


@dataclass(frozen=True)
class Codec:
    """One static-payload-type G.711 codec as SDP and the mixer see it."""

    name: str
    payload_type: int
    clock_rate: int
    decode: Callable[[bytes], np.ndarray]
    encode: Callable[[np.ndarray], bytes]
    silence: bytes
    decode_into: Callable[[bytes, np.ndarray], int]
    encode_table: np.ndarray


_SILENT_FRAME = np.zeros(FRAME_SAMPLES, dtype=np.int16)

PCMU = Codec(
    name="PCMU",
    payload_type=0,
    clock_rate=8000,
    decode=ulaw_decode,
    encode=ulaw_encode,
    silence=ulaw_encode(_SILENT_FRAME),
    decode_into=ulaw_decode_into,
    encode_table=LINEAR_TO_ULAW,
)
PCMA = Codec(
    name="PCMA",
    payload_type=8,
    clock_rate=8000,
    decode=alaw_decode,
    encode=alaw_encode,
    silence=alaw_encode(_SILENT_FRAME),
    decode_into=alaw_decode_into,
    encode_table=LINEAR_TO_ALAW,
)

CODECS: dict[str, Codec] = {PCMU.name: PCMU, PCMA.name: PCMA}
_BY_PAYLOAD_TYPE: dict[int, Codec] = {codec.payload_type: codec for codec in CODECS.values()}


def codec_for_payload_type(payload_type: int) -> Codec | None:
    """The static G.711 codec for an RTP payload type (0 or 8), else None."""
    return _BY_PAYLOAD_TYPE.get(payload_type)
