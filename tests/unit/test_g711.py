"""G.711 tables: known values, a scalar G.191 reference, and a byte-level cross-check with PyAV."""

from __future__ import annotations

import av
import numpy as np
import pytest

from bridge.media.g711 import (
    ALAW_TO_LINEAR,
    CODECS,
    LINEAR_TO_ALAW,
    LINEAR_TO_ULAW,
    PCMA,
    PCMU,
    ULAW_TO_LINEAR,
    alaw_decode,
    alaw_decode_into,
    alaw_encode,
    codec_for_payload_type,
    ulaw_decode,
    ulaw_decode_into,
    ulaw_encode,
)
from bridge.media.tones import sine

ALL_INT16 = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)


# --- scalar transcription of ITU-T G.191 g711.c, one sample at a time (the reference) ---


def g191_ulaw_compress(x: int) -> int:
    absno = ((~x) >> 2) + 33 if x < 0 else (x >> 2) + 33
    absno = min(absno, 0x1FFF)
    i = absno >> 6
    segno = 1
    while i != 0:
        segno += 1
        i >>= 1
    code = ((0x08 - segno) << 4) | (0x0F - ((absno >> segno) & 0x0F))
    return code | 0x80 if x >= 0 else code


def g191_alaw_compress(x: int) -> int:
    ix = (~x) >> 4 if x < 0 else x >> 4
    if ix > 15:
        iexp = 1
        while ix > 16 + 15:
            ix >>= 1
            iexp += 1
        ix -= 16
        ix += iexp << 4
    if x >= 0:
        ix |= 0x80
    return ix ^ 0x55


def g191_ulaw_expand(code: int) -> int:
    sign = -1 if code < 0x80 else 1
    mantissa = ~code
    exponent = (mantissa >> 4) & 0x07
    segment = exponent + 1
    mantissa &= 0x0F
    step = 4 << segment
    return sign * ((0x80 << exponent) + step * mantissa + step // 2 - 4 * 33)


def g191_alaw_expand(code: int) -> int:
    ix = (code ^ 0x55) & 0x7F
    iexp = ix >> 4
    mant = ix & 0x0F
    if iexp > 0:
        mant += 16
    mant = (mant << 4) + 0x08
    if iexp > 1:
        mant <<= iexp - 1
    return mant if code > 127 else -mant


def test_decode_tables_match_g191_reference() -> None:
    assert ULAW_TO_LINEAR.dtype == np.int16 and ULAW_TO_LINEAR.shape == (256,)
    assert ALAW_TO_LINEAR.dtype == np.int16 and ALAW_TO_LINEAR.shape == (256,)
    assert ULAW_TO_LINEAR.tolist() == [g191_ulaw_expand(c) for c in range(256)]
    assert ALAW_TO_LINEAR.tolist() == [g191_alaw_expand(c) for c in range(256)]


def test_encode_tables_match_g191_reference_for_every_input() -> None:
    assert LINEAR_TO_ULAW.dtype == np.uint8 and LINEAR_TO_ULAW.shape == (65536,)
    index = ALL_INT16.view(np.uint16)
    assert LINEAR_TO_ULAW[index].tolist() == [g191_ulaw_compress(int(x)) for x in ALL_INT16]
    assert LINEAR_TO_ALAW[index].tolist() == [g191_alaw_compress(int(x)) for x in ALL_INT16]


def test_known_values() -> None:
    assert ulaw_decode(b"\xff\x7f\x80\x00\xfe\x7e").tolist() == [0, 0, 32124, -32124, 8, -8]
    assert alaw_decode(b"\xd5\x55\xaa\x2a").tolist() == [8, -8, 32256, -32256]
    extremes = np.array([0, -1, 32767, -32768], dtype=np.int16)
    assert ulaw_encode(extremes) == b"\xff\x7f\x80\x00"
    assert alaw_encode(extremes) == b"\xd5\x55\xaa\x2a"


def test_silence_and_codec_registry() -> None:
    assert PCMU.silence == b"\xff" * 160
    assert PCMA.silence == b"\xd5" * 160
    assert CODECS == {"PCMU": PCMU, "PCMA": PCMA}
    assert (PCMU.payload_type, PCMA.payload_type, PCMU.clock_rate) == (0, 8, 8000)
    assert codec_for_payload_type(0) is PCMU
    assert codec_for_payload_type(8) is PCMA
    assert codec_for_payload_type(9) is None


def test_round_trip_of_every_code() -> None:
    codes = bytes(range(256))
    # mu-law has two zeros (0xFF = +0, 0x7F = -0); -0 re-encodes as +0.
    expected_ulaw = bytes(0xFF if c == 0x7F else c for c in range(256))
    assert ulaw_encode(ulaw_decode(codes)) == expected_ulaw
    assert alaw_encode(alaw_decode(codes)) == codes


@pytest.mark.parametrize(
    ("encode", "decode"), [(ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)]
)
def test_quantiser_is_monotonic_and_close(encode, decode) -> None:
    restored = decode(encode(ALL_INT16)).astype(np.int32)
    assert np.all(np.diff(restored) >= 0)
    error = np.abs(restored - ALL_INT16.astype(np.int32))
    # mu-law: clipping at -32768 (32768 - 32124); A-law: half its top step of 1024.
    assert error.max() == (644 if decode is ulaw_decode else 512)


def test_encode_rejects_wider_samples() -> None:
    with pytest.raises(TypeError):
        ulaw_encode(np.zeros(160, dtype=np.int32))


def test_encode_a_whole_room_at_once() -> None:
    frames = np.stack([sine(440, 0.02), sine(1000, 0.02)])
    assert ulaw_encode(frames) == ulaw_encode(frames[0]) + ulaw_encode(frames[1])


@pytest.mark.parametrize(
    ("decode_into", "decode"), [(ulaw_decode_into, ulaw_decode), (alaw_decode_into, alaw_decode)]
)
def test_decode_into_fills_a_whole_row(decode_into, decode) -> None:
    room = np.full((2, 160), 7, dtype=np.int16)
    payload = bytes(range(100))
    assert decode_into(payload, room[1]) == 100
    assert room[1, :100].tolist() == decode(payload).tolist()
    assert not room[1, 100:].any()
    assert (room[0] == 7).all()
    assert decode_into(bytes(range(200)), room[0]) == 160
    assert room[0].tolist() == decode(bytes(range(160))).tolist()


# --- PyAV (FFmpeg) cross-check ---


def pyav_encode(codec_name: str, samples: np.ndarray) -> bytes:
    context = av.CodecContext.create(codec_name, "w")
    context.format = "s16"
    context.sample_rate = 8000
    context.layout = "mono"
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = 8000
    packets = [*context.encode(frame), *context.encode(None)]
    return b"".join(bytes(packet) for packet in packets)


def pyav_decode(codec_name: str, payload: bytes) -> np.ndarray:
    context = av.CodecContext.create(codec_name, "r")
    context.sample_rate = 8000
    context.layout = "mono"
    frames = context.decode(av.Packet(payload))
    return np.concatenate([frame.to_ndarray().reshape(-1) for frame in frames])


def ffmpeg_encode_rule(decode_table: np.ndarray, mask: int) -> np.ndarray:
    """FFmpeg's build_xlaw_table (libavcodec/pcm_tablegen.h), indexed by sample + 32768.

    FFmpeg quantises on a 14-bit grid (sample >> 2), mirrors it as k <-> -k, and puts each
    decision level at the rounded midpoint of two neighbouring reconstruction values.
    """
    table = np.zeros(16384, dtype=np.uint8)
    table[8192] = mask
    j = 1
    for i in range(127):
        level = (int(decode_table[i ^ mask]) + int(decode_table[(i + 1) ^ mask]) + 4) >> 3
        while j < level:
            table[8192 - j] = i ^ (mask ^ 0x80)
            table[8192 + j] = i ^ mask
            j += 1
    while j < 8192:
        table[8192 - j] = 127 ^ (mask ^ 0x80)
        table[8192 + j] = 127 ^ mask
        j += 1
    table[0] = table[1]
    return table[np.arange(65536) >> 2]


LAWS = [
    ("pcm_mulaw", ULAW_TO_LINEAR, LINEAR_TO_ULAW, 0xFF),
    ("pcm_alaw", ALAW_TO_LINEAR, LINEAR_TO_ALAW, 0xD5),
]


@pytest.mark.parametrize(("codec_name", "decode_table", "encode_table", "mask"), LAWS)
def test_pyav_decoder_matches_exactly(codec_name, decode_table, encode_table, mask) -> None:
    decoded = pyav_decode(codec_name, bytes(range(256)))
    assert decoded.dtype == np.int16
    assert decoded.tolist() == decode_table.tolist()


@pytest.mark.parametrize(("codec_name", "decode_table", "encode_table", "mask"), LAWS)
def test_pyav_sine_round_trip(codec_name, decode_table, encode_table, mask) -> None:
    tone = sine(1004, 1.0, amplitude=30000)
    theirs = pyav_encode(codec_name, tone)
    ours = encode_table[tone.view(np.uint16)].tobytes()
    assert (
        pyav_decode(codec_name, theirs).tolist()
        == decode_table[np.frombuffer(theirs, np.uint8)].tolist()
    )
    assert (
        pyav_decode(codec_name, ours).tolist()
        == decode_table[np.frombuffer(ours, np.uint8)].tolist()
    )
    differ = np.frombuffer(theirs, np.uint8) != np.frombuffer(ours, np.uint8)
    assert differ.sum() < len(tone) // 50  # only samples right on a decision level


@pytest.mark.parametrize(("codec_name", "decode_table", "encode_table", "mask"), LAWS)
def test_pyav_encoder_differs_only_by_ffmpegs_decision_levels(
    codec_name, decode_table, encode_table, mask
) -> None:
    """PyAV encodes every int16 exactly as FFmpeg's documented rule, which differs from G.191.

    The differences are all one quantisation step, in two places: (1) at each segment boundary
    FFmpeg's level is the midpoint of the neighbouring reconstruction values, not G.711's
    decision value (positive runs, e.g. mu-law 124..127 -> 120 in FFmpeg, 132 in G.191);
    (2) negatives are mirrored on the 14-bit grid, so every negative level sits 4 lower than
    with G.191's one's complement (e.g. mu-law -4..-1 -> 0x7E = -8 in FFmpeg, 0x7F = 0 in G.191).
    """
    theirs = np.frombuffer(pyav_encode(codec_name, ALL_INT16), np.uint8)
    assert theirs.tolist() == ffmpeg_encode_rule(decode_table, mask).tolist()

    ours = encode_table[ALL_INT16.view(np.uint16)]
    differ = theirs != ours
    assert int(differ.sum()) == 964
    levels = np.sort(decode_table.astype(np.int32))
    rank_theirs = np.searchsorted(levels, decode_table[theirs[differ]])
    rank_ours = np.searchsorted(levels, decode_table[ours[differ]])
    assert set(np.abs(rank_theirs - rank_ours).tolist()) == {1}
    negative = ALL_INT16[differ] < 0
    assert int(negative.sum()) == (708 if mask == 0xFF else 712)
    if mask == 0xFF:
        assert theirs[32768 - 4 : 32768].tolist() == [0x7E] * 4
        assert ours[32768 - 4 : 32768].tolist() == [0x7F] * 4
        assert decode_table[theirs[32768 + 124]] == 120
        assert decode_table[ours[32768 + 124]] == 132
