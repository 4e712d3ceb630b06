"""G.722 (RFC 3551: `G722/8000` in SDP, 16 kHz audio) through PyAV's FFmpeg codec.

Stateful ADPCM: one decoder per incoming stream and one encoder per outgoing mix, never shared
between streams. A 20 ms packet is 160 bytes for 320 samples; a packet of another size is
decoded for what it holds and cut or padded to one frame (the caller counts it as bad).
"""

from __future__ import annotations

import av
import numpy as np
from av.audio.frame import AudioFrame

SAMPLE_RATE = 16000
FRAME_SAMPLES = 320
PAYLOAD_BYTES = 160  # 20 ms: two samples a byte


def _context(mode: str) -> av.CodecContext:
    context = av.CodecContext.create("g722", mode)
    context.sample_rate = SAMPLE_RATE
    context.layout = "mono"
    if mode == "w":
        context.format = "s16"
    context.open()
    return context


class G722Decoder:
    def __init__(self) -> None:
        self._context = _context("r")

    def decode(self, payload: bytes) -> np.ndarray:
        """One 20 ms frame (320 int16 samples) from a payload; other sizes cut or padded."""
        out = np.zeros(FRAME_SAMPLES, np.int16)
        filled = 0
        for frame in self._context.decode(av.Packet(payload[:PAYLOAD_BYTES])):
            samples = frame.to_ndarray().reshape(-1)[: FRAME_SAMPLES - filled]
            out[filled : filled + samples.size] = samples
            filled += samples.size
        return out


class G722Encoder:
    def __init__(self) -> None:
        self._context = _context("w")
        self._pts = 0

    def encode(self, samples: np.ndarray) -> bytes:
        """320 int16 samples to a 160-byte payload."""
        frame = AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        self._pts += FRAME_SAMPLES
        return b"".join(bytes(packet) for packet in self._context.encode(frame))
