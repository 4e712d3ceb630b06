"""Mix-minus for one room and loss concealment for one participant, vectorised with numpy.

Each participant hears the int32 sum of everyone who contributes, minus their own
contribution, saturated to int16. One numpy step per room and tick, no loop over participants:
the per-participant cost of the mix is a few hundred nanoseconds, so the room scales with the
number of packets, not the arithmetic.

Everyone who does not contribute hears the same thing, the whole sum: `RoomMix.mix_contributors`
computes a row of its own only for each contributor plus that one shared row, so a big room
with a few talkers mixes (and encodes) a few rows, not one per listener.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

FRAME_SAMPLES = 160
_INT16_MIN = np.int32(-32768)
_INT16_MAX = np.int32(32767)


def mix_minus(frames: np.ndarray, contributes: np.ndarray) -> np.ndarray:
    """(n, samples) int16 frames and an (n,) bool mask to the (n, samples) int16 mix-minus.

    A row whose mask is False (muted, silent, not yet playing) is left out of the total but
    still hears everyone else. A new array every call; `RoomMix.mix` reuses buffers.
    """
    wide = np.multiply(frames, contributes.astype(np.int32)[:, np.newaxis])
    np.subtract(np.add.reduce(wide, axis=0), wide, out=wide)
    _saturate(wide)
    return wide.astype(np.int16)


def _saturate(wide: np.ndarray) -> None:
    """Clamp int32 samples to the int16 range in place (np.clip's wrapper costs ~5 us more)."""
    np.maximum(wide, _INT16_MIN, out=wide)
    np.minimum(wide, _INT16_MAX, out=wide)


class RoomMix:
    """Preallocated buffers for one room's mix; grows by doubling when the room fills up.

    Typical tick: decode each participant into `frames[i]` (see `slots`), then call
    `mix_contributors(frames[:n], rows)`: a row per contributor and one shared row, the total,
    for everyone else, so a big room encodes that one once for all of them. `mix` gives every
    participant a row of its own (n rows), and `total` the last mix's shared row.
    """

    def __init__(self, capacity: int = 8, frame_samples: int = FRAME_SAMPLES) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.frame_samples = frame_samples
        self.capacity = 0
        self.frames = np.zeros((0, frame_samples), dtype=np.int16)
        self._wide = np.zeros((0, frame_samples), dtype=np.int32)
        self._out = np.zeros((0, frame_samples), dtype=np.int16)
        self._mask = np.zeros((0, 1), dtype=np.int32)
        self._total32 = np.zeros(frame_samples, dtype=np.int32)
        self._grow_to(capacity)

    def slots(self, count: int) -> np.ndarray:
        """The first `count` rows of `frames`, growing the buffers first if needed."""
        if count > self.capacity:
            new_capacity = self.capacity
            while new_capacity < count:
                new_capacity *= 2
            self._grow_to(new_capacity)
        return self.frames[:count]

    def mix(self, frames: np.ndarray, contributes: np.ndarray) -> np.ndarray:
        """Mix-minus of `frames` (n, samples) int16 under the (n,) bool mask.

        Returns a view of an internal buffer, valid until the next call; `frames` may be (a
        slice of) `self.frames` or any other array of that shape.
        """
        count = frames.shape[0]
        if count > self.capacity:  # a foreign array: `self.frames` never has more rows
            self.slots(count)
        wide = self._wide[:count]
        mask = self._mask[:count]
        np.copyto(mask[:, 0], contributes)
        np.multiply(frames, mask, out=wide)
        np.add.reduce(wide, axis=0, out=self._total32)
        np.subtract(self._total32, wide, out=wide)
        _saturate(wide)
        out = self._out[:count]
        np.copyto(out, wide, casting="unsafe")
        return out

    def mix_contributors(self, frames: np.ndarray, rows: Sequence[int]) -> np.ndarray:
        """The mix as heard by the contributors `rows` (ascending indices into `frames`) and,
        in one more row, by everyone else.

        Returns a (len(rows) + 1, samples) int16 view of an internal buffer, valid until the
        next call: row j is what contributor `rows[j]` hears (the total minus its own frame),
        the last row the saturated total, what every non-contributor hears. Bit-identical to
        the matching rows of `mix` under a mask that is True exactly at `rows`.
        """
        count = len(rows)
        if count + 1 > self.capacity:
            self.slots(count + 1)
        if count == frames.shape[0]:
            own = frames  # everyone contributes: no gather
        elif count == 1:
            own = frames[rows[0] : rows[0] + 1]
        else:
            own = frames[rows]  # a small copy: the talkers
        wide = self._wide[: count + 1]
        np.add.reduce(own, axis=0, dtype=np.int32, out=self._total32)
        np.subtract(self._total32, own, out=wide[:count])
        wide[count] = self._total32
        _saturate(wide)
        out = self._out[: count + 1]
        np.copyto(out, wide, casting="unsafe")
        return out

    @property
    def total(self) -> np.ndarray:
        """The last mix as a non-contributing listener hears it: the saturated int16 total."""
        total = self._total32.copy()
        _saturate(total)
        return total.astype(np.int16)

    def _grow_to(self, capacity: int) -> None:
        frames = np.zeros((capacity, self.frame_samples), dtype=np.int16)
        frames[: self.capacity] = self.frames
        self.frames = frames
        self._wide = np.zeros((capacity, self.frame_samples), dtype=np.int32)
        self._out = np.zeros((capacity, self.frame_samples), dtype=np.int16)
        self._mask = np.zeros((capacity, 1), dtype=np.int32)
        self.capacity = capacity


CONCEAL_SHIFTS = (1, 2, 3)
"""Right shifts for the 1st, 2nd and 3rd missing frame: x0.5, x0.25, x0.125; then silence."""


class Concealer:
    """Packet loss concealment for one participant: fade the last good frame out.

    Crude on purpose: repeating a 20 ms frame at falling gain hides a lost packet or two far
    better than a hole, costs one shift, and fades to silence before the repetition buzzes.

    `good_payload` keeps the encoded payload and decodes it only if a loss follows, so a
    stream without loss costs no numpy call here (the room decodes every frame in one batch).
    """

    def __init__(self, frame_samples: int = FRAME_SAMPLES) -> None:
        self._last = np.zeros(frame_samples, dtype=np.int16)
        self._out = np.zeros(frame_samples, dtype=np.int16)
        self.missing = 0
        """Frames concealed in a row since the last good one."""
        self._have_good = False
        self._payload: bytes | None = None  # the last good frame, not yet decoded into _last
        self._decode: Callable[[bytes, np.ndarray], int] | None = None  # a module function

    @property
    def silent(self) -> bool:
        """True when `conceal` would return silence (nothing left to fade)."""
        return not self._have_good or self.missing >= len(CONCEAL_SHIFTS)

    def good(self, frame: np.ndarray) -> None:
        """Remember a frame that arrived; shorter frames are zero-padded."""
        count = min(frame.shape[0], self._last.shape[0])
        self._last[:count] = frame[:count]
        self._last[count:] = 0
        self._payload = None
        self.missing = 0
        self._have_good = True

    def good_payload(self, payload: bytes, decode_into: Callable[[bytes, np.ndarray], int]) -> None:
        """Remember an encoded frame that arrived, as `good` would its decoded samples.

        `decode_into` (a codec's, e.g. `g711.ulaw_decode_into`: zero-pads short payloads) runs
        only if this frame must be faded; keep it a module-level function, so a participant
        still pickles.
        """
        self._payload = payload
        self._decode = decode_into
        self.missing = 0
        self._have_good = True

    def fade(self) -> np.ndarray | None:
        """A stand-in for one missing frame, or None when it is silence (nothing to fade).

        Like `conceal`, but silence costs no copy: the room zeroes its silent rows in one go.
        """
        if self.silent:
            self.missing += 1
            return None
        if self._payload is not None:
            assert self._decode is not None
            self._decode(self._payload, self._last)
            self._payload = None
        np.right_shift(self._last, CONCEAL_SHIFTS[self.missing], out=self._out)
        self.missing += 1
        return self._out

    def conceal(self) -> np.ndarray:
        """A stand-in for one missing frame (an internal buffer, valid until the next call)."""
        faded = self.fade()
        if faded is None:
            self._out[:] = 0
            return self._out
        return faded
