"""Mix-minus for one room and loss concealment for one participant, vectorised with numpy.

Each participant hears the int32 sum of everyone who contributes, minus their own
contribution, saturated to int16. One numpy step per room and tick, no loop over participants:
the per-participant cost of the mix is a few hundred nanoseconds, so the room scales with the
number of packets, not the arithmetic.
"""

from __future__ import annotations

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
    `mix(frames[:n], contributes)`. `total` then gives the mix a non-contributing listener
    hears, so a big room can encode it once for all of them.
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
    """

    def __init__(self, frame_samples: int = FRAME_SAMPLES) -> None:
        self._last = np.zeros(frame_samples, dtype=np.int16)
        self._out = np.zeros(frame_samples, dtype=np.int16)
        self.missing = 0
        """Frames concealed in a row since the last good one."""
        self._have_good = False

    @property
    def silent(self) -> bool:
        """True when `conceal` would return silence (nothing left to fade)."""
        return not self._have_good or self.missing >= len(CONCEAL_SHIFTS)

    def good(self, frame: np.ndarray) -> None:
        """Remember a frame that arrived; shorter frames are zero-padded."""
        count = min(frame.shape[0], self._last.shape[0])
        self._last[:count] = frame[:count]
        self._last[count:] = 0
        self.missing = 0
        self._have_good = True

    def conceal(self) -> np.ndarray:
        """A stand-in for one missing frame (an internal buffer, valid until the next call)."""
        if self.silent:
            self._out[:] = 0
        else:
            np.right_shift(self._last, CONCEAL_SHIFTS[self.missing], out=self._out)
        self.missing += 1
        return self._out
