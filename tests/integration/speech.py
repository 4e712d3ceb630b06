"""Speech for quality tests: espeak-ng's speech as a softphone's source file, and PESQ of what
a phone heard against it, found in the recording by cross-correlation."""

from __future__ import annotations

import io
import subprocess
import wave
from pathlib import Path

import numpy as np
from pesq import pesq

from bridge.tools.audio_files import decode_mono as resampled

TEXT = "The quick brown fox jumps over the lazy dog. Seven, eight, nine, ten: the meeting starts."



def to_wav(samples: np.ndarray, rate: int, channels: int = 1) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(np.repeat(samples[:, None], channels, axis=1).astype("<i2").tobytes())
    return out.getvalue()


def speech_source(path: Path) -> np.ndarray:
    """espeak-ng's speech at 16 kHz (the reference), written for baresip's aufile as 48 kHz
    stereo after a second of silence (the call settles) and followed by silence."""
    spoken = subprocess.run(["espeak-ng", "--stdout", TEXT], check=True, capture_output=True)
    at_48k = resampled(spoken.stdout, 48000)
    silence = np.zeros(48000, np.int16)
    path.write_bytes(to_wav(np.concatenate([silence, at_48k, silence, silence]), 48000, 2))
    return resampled(to_wav(at_48k, 48000), 16000)


def pesq_score(reference: np.ndarray, heard: np.ndarray, rate: int = 16000) -> float:
    """P.862.2 (16 kHz) or P.862 (8 kHz) of `heard` (starting somewhere before the speech)
    against `reference`, once the speech is found in it by cross-correlation."""
    size = 1 << int(np.ceil(np.log2(heard.size + reference.size)))
    spectrum = np.fft.rfft(heard.astype(np.float64), size)
    spectrum *= np.conj(np.fft.rfft(reference.astype(np.float64), size))
    offset = int(np.argmax(np.fft.irfft(spectrum, size)[: heard.size - reference.size]))
    degraded = heard[offset : offset + reference.size]
    mode = "wb" if rate == 16000 else "nb"
    return float(pesq(rate, reference.astype(np.float64), degraded.astype(np.float64), mode))
