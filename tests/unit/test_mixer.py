"""Mix-minus and loss concealment."""

from __future__ import annotations

import numpy as np
import pytest

from bridge.media.g711 import ulaw_decode_into, ulaw_encode
from bridge.media.mixer import Concealer, RoomMix, mix_minus
from bridge.media.tones import ToneSource, dominant_frequencies, tone_levels

FREQS = (500.0, 1000.0, 2000.0)
TONE_DB = 20 * np.log10(8000 / 32768)


def mix_tones(contributes: list[bool], seconds: float = 0.5) -> np.ndarray:
    """Stream one tone per participant through RoomMix; returns (n, samples) heard."""
    sources = [ToneSource(freq, 8000) for freq in FREQS]
    room = RoomMix(capacity=2)
    mask = np.array(contributes)
    heard = []
    for _ in range(round(seconds / 0.02)):
        frames = room.slots(len(sources))
        for row, source in zip(frames, sources, strict=True):
            row[:] = source.next_frame()
        heard.append(room.mix(frames, mask).copy())
    return np.concatenate(heard, axis=1)


def test_each_participant_hears_the_others_and_not_itself() -> None:
    heard = mix_tones([True, True, True])
    for own, samples in zip(FREQS, heard, strict=True):
        levels = tone_levels(samples, FREQS)
        others = [f for f in FREQS if f != own]
        assert levels[own] < -100
        for freq in others:
            assert levels[freq] == pytest.approx(TONE_DB, abs=0.05)
        assert sorted(dominant_frequencies(samples, count=3)) == [
            pytest.approx(f, abs=0.5) for f in others
        ]


def test_muted_row_is_not_heard_but_still_hears() -> None:
    heard = mix_tones([True, False, True])
    assert dominant_frequencies(heard[0], count=3) == [pytest.approx(2000, abs=0.5)]
    assert sorted(dominant_frequencies(heard[1], count=3)) == [
        pytest.approx(500, abs=0.5),
        pytest.approx(2000, abs=0.5),
    ]
    assert dominant_frequencies(heard[2], count=3) == [pytest.approx(500, abs=0.5)]


def test_exact_sums() -> None:
    frames = np.array([[1, 2], [10, 20], [100, -200]], dtype=np.int16)
    out = mix_minus(frames, np.array([True, True, True]))
    assert out.dtype == np.int16
    assert out.tolist() == [[110, -180], [101, -198], [11, 22]]
    assert mix_minus(frames, np.array([True, False, True])).tolist() == [
        [100, -200],
        [101, -198],
        [1, 2],
    ]


def test_saturates_at_int16_limits() -> None:
    frames = np.array([[30000, -30000], [30000, -30000], [30000, -30000]], dtype=np.int16)
    out = mix_minus(frames, np.ones(3, dtype=bool))
    assert out.tolist() == [[32767, -32768]] * 3
    room = RoomMix(frame_samples=2)
    assert room.mix(frames, np.ones(3, dtype=bool)).tolist() == [[32767, -32768]] * 3
    assert room.total.tolist() == [32767, -32768]


def test_lone_participant_hears_silence() -> None:
    frame = np.full((1, 160), 1234, dtype=np.int16)
    assert not mix_minus(frame, np.array([True])).any()
    assert not mix_minus(frame, np.array([False])).any()
    assert not RoomMix().mix(frame, np.array([True])).any()


def test_nobody_talking_means_silence_for_all() -> None:
    frames = np.full((4, 160), 999, dtype=np.int16)
    assert not mix_minus(frames, np.zeros(4, dtype=bool)).any()


def test_room_mix_matches_reference_and_leaves_input_alone() -> None:
    rng = np.random.default_rng(7)
    room = RoomMix(capacity=2)
    for count in (1, 2, 5, 17):
        frames = rng.integers(-32768, 32768, size=(count, 160)).astype(np.int16)
        contributes = rng.random(count) < 0.7
        before = frames.copy()
        reference = np.empty_like(frames)
        for i in range(count):
            total = sum(int(c) * frames[j].astype(np.int64) for j, c in enumerate(contributes))
            own = frames[i].astype(np.int64) if contributes[i] else 0
            reference[i] = np.clip(total - own, -32768, 32767)
        assert room.mix(frames, contributes).tolist() == reference.tolist()
        assert mix_minus(frames, contributes).tolist() == reference.tolist()
        assert np.array_equal(frames, before)
    assert room.capacity == 32


def test_slots_grow_by_doubling_and_keep_contents() -> None:
    room = RoomMix(capacity=8)
    room.slots(8)[7] = 42
    assert room.capacity == 8
    frames = room.slots(9)
    assert room.capacity == 16
    assert frames.shape == (9, 160)
    assert (room.frames[7] == 42).all()
    assert room.slots(40).shape == (40, 160) and room.capacity == 64


def test_mix_of_own_slots_and_of_a_bigger_foreign_array() -> None:
    room = RoomMix(capacity=2)
    frames = room.slots(2)
    frames[:] = [[1] * 160, [2] * 160]
    assert room.mix(frames, np.array([True, True]))[:, 0].tolist() == [2, 1]
    bigger = np.arange(5, dtype=np.int16)[:, np.newaxis].repeat(160, axis=1)
    assert room.mix(bigger, np.ones(5, dtype=bool))[:, 0].tolist() == [10, 9, 8, 7, 6]
    assert room.capacity == 8


def test_concealer_fades_the_last_good_frame_then_silence() -> None:
    concealer = Concealer()
    assert not concealer.conceal().any()  # nothing heard yet
    frame = np.array([-5, 8, 1000, -32768] * 40, dtype=np.int16)
    concealer.good(frame)
    assert not concealer.silent
    faded = [concealer.conceal()[:4].tolist() for _ in range(5)]
    assert faded == [
        [-3, 4, 500, -16384],
        [-2, 2, 250, -8192],
        [-1, 1, 125, -4096],
        [0, 0, 0, 0],
        [0, 0, 0, 0],
    ]
    assert concealer.silent and concealer.missing == 5
    concealer.good(frame[:80])
    assert concealer.missing == 0
    out = concealer.conceal()
    assert out[:4].tolist() == [-3, 4, 500, -16384]
    assert not out[80:].any()


def test_mix_contributors_gives_their_rows_and_the_shared_total() -> None:
    rng = np.random.default_rng(11)
    room = RoomMix(capacity=2)
    for count in (1, 2, 3, 9, 40):
        frames = rng.integers(-32768, 32768, size=(count, 160)).astype(np.int16)
        for contributes in (
            np.zeros(count, bool),
            np.ones(count, bool),
            np.arange(count) == count - 1,
            rng.random(count) < 0.3,
        ):
            before = frames.copy()
            rows = np.flatnonzero(contributes).tolist()
            full = mix_minus(frames, contributes)
            out = room.mix_contributors(frames, rows)
            assert out.dtype == np.int16 and out.shape == (len(rows) + 1, 160)
            assert out[:-1].tolist() == full[rows].tolist()
            # every non-contributor hears the saturated total
            total = np.clip(frames[rows].astype(np.int64).sum(axis=0), -32768, 32767)
            assert out[-1].tolist() == total.tolist() == room.total.tolist()
            assert all(full[i].tolist() == total.tolist() for i in range(count) if i not in rows)
            assert np.array_equal(frames, before)
    assert room.capacity == 64  # 40 contributors and the total row


def test_mix_contributors_saturates_the_shared_row_too() -> None:
    frames = np.array([[30000, -30000], [30000, -30000], [5, 5]], dtype=np.int16)
    room = RoomMix(frame_samples=2)
    assert room.mix_contributors(frames, [0, 1]).tolist() == [
        [30000, -30000],
        [30000, -30000],
        [32767, -32768],
    ]


def test_concealer_keeps_a_payload_and_decodes_it_only_to_fade_it() -> None:
    eager, lazy = Concealer(), Concealer()
    frame = np.array([-5, 8, 1000, -32768] * 40, dtype=np.int16)
    payload = ulaw_encode(frame)
    decoded = np.zeros(160, np.int16)
    ulaw_decode_into(payload, decoded)
    eager.good(decoded)
    lazy.good_payload(payload, ulaw_decode_into)
    assert not lazy.silent
    for _ in range(5):
        assert lazy.conceal().tolist() == eager.conceal().tolist()
    assert lazy.missing == eager.missing == 5 and lazy.fade() is None and lazy.missing == 6
    lazy.good_payload(payload[:80], ulaw_decode_into)  # short: zero-padded, as `good` does
    eager.good(decoded[:80])
    faded = lazy.fade()
    assert faded is not None and faded.tolist() == eager.conceal().tolist()
    lazy.good_payload(payload, ulaw_decode_into)
    lazy.good(decoded[:4])  # a later frame given decoded wins over the kept payload
    assert lazy.conceal()[:6].tolist() == [*(decoded[:4] >> 1).tolist(), 0, 0]
