"""In-band DTMF detection (ITU-T Q.23/Q.24 style) for a whole room in one vectorised step.

Why one matrix product: one numpy call per participant costs ~20 us, while multiplying the
room's frames by a basis of cosines and sines at the 8 DTMF frequencies (Goertzel at exact
frequencies, a Hann window folded in) costs well under a microsecond a row. A cheap necessary
condition then leaves only the rare frames that may hold a key tone for the full checks, and a
few Python lines per such row keep each participant's state.

Analysis: a 20 ms Hann window every 10 ms. Each tick looks at two windows per participant,
the current frame and the one straddling the previous frame's second half, so the detector
keeps the last half frame of every row (in `DtmfState.tail`). Why: with a 20 ms hop a 40 ms key
press can straddle three frames and fill none; at a 10 ms hop it always fills two windows, so
40 ms presses are accepted at any alignment and presses under ~25 ms are rejected. Hann rather
than a plain Goertzel block: its wider main lobe accepts Q.24's +-1.5% frequency tolerance, and
its low sidelobes still part 697 from 770 Hz (-14 dB).

A window holds a key tone when:
- the strongest row tone and the strongest column tone each beat the others of their group
  by `peak_ratio_db`;
- their levels differ by no more than the twist limits (normal twist: the high, column tone
  is the louder one, as phones send it; reverse twist: the low, row tone is);
- together they hold `min_tone_share` of the window's power (speech and music spread theirs
  over harmonics: measured at most ~0.67 for espeak-ng speech and ~0.77 for a chord of two
  notes with harmonics near a row and a column tone, against ~0.97 for a key tone through PCMU;
  at 0.75, ten minutes of synthetic music gave 13 false keys, at 0.8 and above none);
- together they reach `min_level_dbm0`.
A key is reported once, when `min_tone_windows` consecutive windows hold the same key; the next
key needs `min_gap_windows` windows without one first (so a dropout under 10 ms does not
repeat the key).

Levels are in dBm0 for G.711: 0 dBm0 is a sine of peak amplitude ~22,700 (full scale is
+3.17 dBm0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

ROW_FREQUENCIES = (697.0, 770.0, 852.0, 941.0)
COLUMN_FREQUENCIES = (1209.0, 1336.0, 1477.0, 1633.0)
KEYPAD = ("123A", "456B", "789C", "*0#D")
KEYS = "".join(KEYPAD)
"""Keys by index row * 4 + column."""
DBM0_AMPLITUDE = 22_700.0
"""Peak amplitude of a 0 dBm0 sine in int16 samples (G.711: full scale is +3.17 dBm0)."""

NO_KEY = -1
_TONES = len(ROW_FREQUENCIES) + len(COLUMN_FREQUENCIES)
_NO_KEYS = (NO_KEY, NO_KEY)
_TAIL = 2 * _TONES + 1  # the last half frame's partial spectrum, then its partial power


@dataclass(frozen=True)
class DtmfConfig:
    """Acceptance limits (Q.24's usual values: 8 dB twist, accept 40 ms, reject ~25 ms)."""

    min_level_dbm0: float = -30.0  # the two tones together
    peak_ratio_db: float = 8.0  # each tone over the next strongest of its group
    normal_twist_db: float = 8.0  # column (high) tone louder than the row (low) tone
    reverse_twist_db: float = 8.0  # row (low) tone louder than the column (high) tone
    min_tone_share: float = 0.85  # of the window's power, both tones together
    min_tone_windows: int = 3  # consecutive windows 10 ms apart: ~40 ms of tone
    min_gap_windows: int = 2  # windows without a key tone before the next key counts

    def __post_init__(self) -> None:
        if self.min_tone_windows < 1 or self.min_gap_windows < 1:
            raise ValueError("min_tone_windows and min_gap_windows must be at least 1")
        if not 0.0 < self.min_tone_share <= 1.0:
            raise ValueError("min_tone_share must be in (0, 1]")


@dataclass(slots=True, eq=False)
class DtmfState:
    """One participant's detector state; the room keeps it on the participant.

    `tone_present` is True while this participant's current frame holds a key tone, so the
    mixer can leave the frame out: key tones are removed from the mix where detected.
    """

    tone_present: bool = False
    key: int = NO_KEY  # the key of the current run of key-tone windows
    run: int = 0  # consecutive windows holding `key`
    reported: bool = False  # the key was reported: wait for the tone to stop
    gap: int = 0  # consecutive windows without a key tone since the report
    tail: np.ndarray | None = field(default=None, repr=False)  # the detector's, for the next tick

    @property
    def busy(self) -> bool:
        return self.tone_present or self.reported


def _power_ratio(db: float) -> float:
    return 10.0 ** (db / 10.0)


class DtmfDetector:
    """In-band DTMF for one room: `process` once per tick with the room's frame matrix.

    Keep one detector per room: it holds what the next tick needs of each row's last half
    frame (its partial spectrum and power, in `DtmfState.tail`), matched to the states by
    identity, so rows may change order or membership between ticks.
    """

    def __init__(self, rate: int = 8000, config: DtmfConfig | None = None) -> None:
        self.rate = rate
        self.config = config or DtmfConfig()
        self.frame_samples = rate // 50
        self._half = self.frame_samples // 2
        window = np.hanning(self.frame_samples + 2)[1:-1]
        self._basis, self._weights = self._make_basis(rate, window)
        self._ones = np.ones(2 * _TONES, dtype=np.float32)
        config = self.config
        reference = DBM0_AMPLITUDE**2 / 2.0  # mean power of a 0 dBm0 sine
        self._min_power = reference * _power_ratio(config.min_level_dbm0)
        self._peak_ratio = _power_ratio(config.peak_ratio_db)
        self._normal_twist = _power_ratio(config.normal_twist_db)
        self._reverse_twist = _power_ratio(config.reverse_twist_db)
        self._tails = np.zeros((0, _TAIL), dtype=np.float32)
        self._rows: list[DtmfState] = []  # the states the rows of `_tails` belong to
        self._busy: list[int] = []  # rows whose state was busy after the last tick
        self.energies = np.zeros(0, dtype=np.float32)
        """Sum of squared samples of each row of the last frames: computed here anyway, so the
        room's talking detection needs no second pass over the frames."""

    def _make_basis(self, rate: int, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per half frame: (half, 32) float32 basis and (half, 2) power weights.

        A window is two half frames, so each half is multiplied by the first half of the
        windowed basis (columns 0..15: cosines then sines) and by its second half (16..31).
        Scaled so cos**2 + sin**2 over a window is a tone's mean power (A**2 / 2 for a sine
        of amplitude A filling it at that frequency); the weights give the window's
        Hann-weighted mean square, its total power on the same scale.
        """
        samples, half = window.size, self._half
        freqs = np.array(ROW_FREQUENCIES + COLUMN_FREQUENCIES)
        phase = 2.0 * math.pi * np.outer(np.arange(samples), freqs) / rate
        full = np.hstack([np.cos(phase), np.sin(phase)]) * window[:, None]
        full *= math.sqrt(2.0) / window.sum()
        basis = np.hstack([full[:half], full[half:]])
        power = window**2 / np.sum(window**2)
        weights = np.stack([power[:half], power[half:]], axis=1)
        return basis.astype(np.float32), weights.astype(np.float32)

    def frame_energies(self, frames: np.ndarray) -> np.ndarray:
        """`energies` alone, the same values `process` computes, for a tick that needs no key
        detection (every caller sends its keys as RFC 4733 events)."""
        self.energies = _sums_of_squares(frames.astype(np.float32))
        return self.energies

    def new_state(self) -> DtmfState:
        return DtmfState()

    def _windows(
        self, frames: np.ndarray, states: Sequence[DtmfState]
    ) -> tuple[np.ndarray, np.ndarray]:
        """(n, 2, 16) spectra and (n, 2) powers of this tick's two windows, earlier first.

        The earlier window is the previous frame's second half and this frame's first half;
        the later one is this frame. Advances the tails to this frame's second half.
        """
        count = frames.shape[0]
        if frames.ndim != 2 or frames.shape[1] != self.frame_samples:
            raise ValueError(f"expected (n, {self.frame_samples}) frames, got {frames.shape}")
        if len(states) != count:
            raise ValueError(f"{count} frames but {len(states)} states")
        tails = self._align(states)
        wide = frames.astype(np.float32)
        halves = wide.reshape(2 * count, self._half)
        # [row, first/second half of the frame, first/second half of the window, bins]
        parts = (halves @ self._basis).reshape(count, 2, 2, 2 * _TONES)
        self.energies = _sums_of_squares(wide)  # per row, for the room's voice activity
        power = (halves @ self._weights).reshape(count, 2, 2)
        spectra = np.empty((count, 2, 2 * _TONES), dtype=np.float32)
        np.add(tails[:, : 2 * _TONES], parts[:, 0, 1], out=spectra[:, 0])
        np.add(parts[:, 0, 0], parts[:, 1, 1], out=spectra[:, 1])
        totals = np.empty((count, 2), dtype=np.float32)
        np.add(tails[:, 2 * _TONES], power[:, 0, 1], out=totals[:, 0])
        np.add(power[:, 0, 0], power[:, 1, 1], out=totals[:, 1])
        tails[:, : 2 * _TONES] = parts[:, 1, 0]
        tails[:, 2 * _TONES] = power[:, 1, 0]
        return spectra, totals

    def _align(self, states: Sequence[DtmfState]) -> np.ndarray:
        """The tails in the order of `states`; rebuilt only when the rows changed."""
        current = states if isinstance(states, list) else list(states)
        if current == self._rows:  # identity per element (eq=False): the usual tick
            return self._tails
        tails = np.zeros((len(current), _TAIL), dtype=np.float32)
        for row, state in enumerate(current):
            if state.tail is not None:
                tails[row] = state.tail
            state.tail = tails[row]  # a view: updating the matrix updates every state
        self._tails = tails
        self._rows = list(current)
        self._busy = [row for row, state in enumerate(current) if state.busy]
        return tails

    def tone_powers(
        self, frames: np.ndarray, states: Sequence[DtmfState]
    ) -> tuple[np.ndarray, np.ndarray]:
        """(n, 2, 8) mean power at each DTMF frequency (rows, then columns) and (n, 2) total
        power, per window, earlier window first; for tests and tuning. Advances the tails
        as `process` does, so use it instead of `process`, not besides."""
        spectra, totals = self._windows(frames, states)
        squared = spectra * spectra
        return squared[:, :, :_TONES] + squared[:, :, _TONES:], totals

    def classify(self, frames: np.ndarray, states: Sequence[DtmfState]) -> np.ndarray:
        """(n, 2) int: the key (index into `KEYS`) each window holds a tone of, or -1.

        Advances the tails as `process` does, so use it instead of `process`, not besides."""
        keys = np.full(frames.shape[0] * 2, NO_KEY, dtype=np.int64)
        windows, found = self._hits(frames, states)
        keys[windows] = found
        return keys.reshape(-1, 2)

    def _hits(
        self, frames: np.ndarray, states: Sequence[DtmfState]
    ) -> tuple[np.ndarray, np.ndarray]:
        """The windows (row * 2 + 0 for the earlier, + 1 for the later) holding a key tone,
        ascending, and their keys."""
        spectra, totals = self._windows(frames, states)
        squared = (spectra * spectra).reshape(-1, 2 * _TONES)
        totals = totals.reshape(-1)
        in_bins = squared @ self._ones
        share = self.config.min_tone_share
        # necessary for a key tone, and false for nearly every window of speech or silence
        maybe = np.flatnonzero((in_bins >= share * totals) & (in_bins >= self._min_power))
        if maybe.size == 0:
            return maybe, maybe
        keys = self._keys(squared[maybe], totals[maybe])
        hit = keys != NO_KEY
        return maybe[hit], keys[hit]

    def _keys(self, squared: np.ndarray, totals: np.ndarray) -> np.ndarray:
        """The full checks on the few candidate windows: their key, or -1."""
        powers = squared[:, :_TONES] + squared[:, _TONES:]
        rows, columns = powers[:, :4], powers[:, 4:]
        rows_sorted = np.sort(rows, axis=1)
        columns_sorted = np.sort(columns, axis=1)
        row_power, column_power = rows_sorted[:, -1], columns_sorted[:, -1]
        both = row_power + column_power
        ok = (
            (row_power >= self._peak_ratio * rows_sorted[:, -2])
            & (column_power >= self._peak_ratio * columns_sorted[:, -2])
            & (column_power <= self._normal_twist * row_power)
            & (row_power <= self._reverse_twist * column_power)
            & (both >= self.config.min_tone_share * totals)
            & (both >= self._min_power)
        )
        keys = rows.argmax(axis=1) * 4 + columns.argmax(axis=1)
        return np.where(ok, keys, NO_KEY)

    def process(self, frames: np.ndarray, states: Sequence[DtmfState]) -> list[str | None]:
        """One 20 ms tick for a room: per row, the key pressed (reported once) or None.

        `frames` is (n, 160) int16, one row per participant as decoded for the mix, and
        `states[i]` is row i's state. Also updates each state's `tone_present`.
        """
        windows, found = self._hits(frames, states)
        digits: list[str | None] = [None] * len(states)
        if not windows.size and not self._busy:
            return digits  # the usual tick: no key tone anywhere, no key in progress
        keys: dict[int, list[int]] = {}
        for window, key in zip(windows.tolist(), found.tolist(), strict=True):
            keys.setdefault(window >> 1, [NO_KEY, NO_KEY])[window & 1] = key
        busy = []
        for i in keys.keys() | set(self._busy):
            state = states[i]
            earlier, later = keys.get(i, _NO_KEYS)
            state.tone_present = earlier != NO_KEY or later != NO_KEY
            key = self._step(state, earlier)
            if key is None:
                key = self._step(state, later)
            else:
                self._step(state, later)
            if key is not None:
                digits[i] = KEYS[key]
            if state.busy:
                busy.append(i)
        self._busy = busy
        return digits

    def _step(self, state: DtmfState, key: int) -> int | None:
        """Advance one window; the key when this window completes a press."""
        if key == NO_KEY:
            state.key, state.run = NO_KEY, 0
            if state.reported:
                state.gap += 1
                if state.gap >= self.config.min_gap_windows:
                    state.reported, state.gap = False, 0
            return None
        state.gap = 0
        if state.reported:
            return None  # the key is still held (or changed without a pause): once per press
        if key == state.key:
            state.run += 1
        else:
            state.key, state.run = key, 1
        if state.run < self.config.min_tone_windows:
            return None
        state.reported = True
        return key


def _sums_of_squares(wide: np.ndarray) -> np.ndarray:
    """Per row of a float32 copy of the frames (squared in place): its energy."""
    np.multiply(wide, wide, out=wide)
    return wide.sum(axis=1)
