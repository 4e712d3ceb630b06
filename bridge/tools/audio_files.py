"""Audio files as sample arrays, for the quality tests and benchmarks (PESQ needs the speech at
exactly 8 or 16 kHz, whatever file or softphone recording it came from)."""

from __future__ import annotations

import io

import av
import numpy as np


def decode_mono(data: bytes, rate: int) -> np.ndarray:
    """Mono int16 samples at `rate` from any audio file PyAV reads."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
    chunks = []
    with av.open(io.BytesIO(data)) as container:
        for frame in container.decode(container.streams.audio[0]):
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(chunks).astype(np.int16)
