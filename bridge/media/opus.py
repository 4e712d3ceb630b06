"""Opus (RFC 7587: `opus/48000/2` in SDP) for one stream: the fmtp parameters, an encoder
through PyAV's libopus, and a decoder on libopus itself.

Why the decoder is not PyAV's: FFmpeg's Opus decoders (native and libopus) take packets only,
so neither in-band FEC (decode the *next* packet's redundancy in place of a lost one) nor the
codec's own loss concealment (decode "no packet") can be asked for. The decoder calls the same
libopus PyAV ships with (Debian's libopus0 first) through ctypes: three C functions.

We mix mono; a stereo packet decodes to mono (libopus downmixes), and we send mono, which a
stereo receiver plays on both channels (RFC 7587 §7.1).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
from dataclasses import dataclass
from functools import cache

import av
import numpy as np
from av.audio.frame import AudioFrame

SAMPLE_RATE = 48000
CLOCK_RATE = 48000  # RTP timestamps: 48 kHz whatever the audio bandwidth (RFC 7587 §4.1)
FRAME_SAMPLES = 960  # 20 ms
MAX_PAYLOAD = 1275 * 3  # RFC 6716 §3.2.1: at most 1275 bytes a frame, 120 ms a packet
PLC_FRAMES = 5  # then silence: a long gap is DTX or a dead phone, not a lost packet
BIT_RATE = 32000
_CUTOFF_HZ = ((8000, 4000), (12000, 6000), (16000, 8000), (24000, 12000))  # else fullband


@dataclass(frozen=True)
class OpusParams:
    """A peer's fmtp: how it wants to receive (`max_playback_rate`, FEC, DTX) and what it
    sends (`max_capture_rate`). Unknown or malformed parameters take RFC 7587's defaults."""

    max_playback_rate: int = 48000
    max_capture_rate: int = 48000
    inband_fec: bool = False
    dtx: bool = False
    ptime: int | None = None

    @classmethod
    def parse(cls, fmtp: str | None) -> OpusParams:
        values: dict[str, str] = {}
        for part in (fmtp or "").split(";"):
            name, _, value = part.strip().partition("=")
            values[name.strip().lower()] = value.strip()

        def rate(name: str) -> int:
            text = values.get(name, "")
            return min(48000, max(8000, int(text))) if text.isdigit() else 48000

        ptime = values.get("ptime", "")
        return cls(
            max_playback_rate=rate("maxplaybackrate"),
            max_capture_rate=rate("sprop-maxcapturerate"),
            inband_fec=values.get("useinbandfec") == "1",
            dtx=values.get("usedtx") == "1",
            ptime=int(ptime) if ptime.isdigit() else None,
        )

    @property
    def mixing_rate(self) -> int:
        """The rate this member needs in the mix: 16 kHz when it neither sends nor plays more."""
        return 16000 if max(self.max_playback_rate, self.max_capture_rate) <= 16000 else 48000

    @property
    def cutoff_hz(self) -> int:
        """The encoder's audio bandwidth for the peer's `maxplaybackrate` (0: fullband)."""
        return next((cut for rate, cut in _CUTOFF_HZ if self.max_playback_rate <= rate), 0)


OUR_FMTP = "useinbandfec=1;usedtx=1"
"""What we ask of peers: FEC in their packets; DTX welcome (silence costs no packets)."""


class OpusEncoder:
    """Encodes 48 kHz mono frames for peers who share `params` (a room's shared mix, or a
    talker's own)."""

    def __init__(self, params: OpusParams) -> None:
        context = av.CodecContext.create("libopus", "w")
        context.sample_rate = SAMPLE_RATE
        context.layout = "mono"
        context.format = "s16"
        context.bit_rate = BIT_RATE
        options = {"application": "voip", "frame_duration": "20", "vbr": "on"}
        if params.inband_fec:
            options |= {"fec": "1", "packet_loss": "10"}
        if params.dtx:
            options["dtx"] = "1"
        if params.cutoff_hz:
            options["cutoff"] = str(params.cutoff_hz)
        context.options = options
        context.open()
        self._context = context
        self._pts = 0

    def encode(self, samples: np.ndarray) -> bytes:
        """960 int16 samples to one packet (libopus emits one per 20 ms frame, no delay)."""
        frame = AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        self._pts += FRAME_SAMPLES
        return b"".join(bytes(packet) for packet in self._context.encode(frame))


class OpusError(RuntimeError):
    """libopus is missing or refused: the call cannot use Opus."""


@cache
def _libopus() -> ctypes.CDLL:
    candidates = [ctypes.util.find_library("opus")]
    candidates += glob.glob(os.path.join(os.path.dirname(av.__file__) + ".libs", "libopus*.so*"))
    for name in candidates:
        if name:
            try:
                lib = ctypes.CDLL(name)
            except OSError:
                continue
            lib.opus_decoder_create.restype = ctypes.c_void_p
            lib.opus_decoder_create.argtypes = [ctypes.c_int32, ctypes.c_int,
                                                ctypes.POINTER(ctypes.c_int)]
            lib.opus_decode.restype = ctypes.c_int
            lib.opus_decode.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int32,
                                        ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
            lib.opus_decoder_destroy.argtypes = [ctypes.c_void_p]
            return lib
    raise OpusError("libopus not found (Debian: libopus0)")


class OpusDecoder:
    """One incoming stream: packets, FEC from the next packet, and concealment.

    Counters: `fec` frames rebuilt from the next packet's redundancy, `concealed` frames made
    up by the codec, `corrupt` packets libopus refused (concealed instead).
    """

    def __init__(self) -> None:
        self._lib = _libopus()
        error = ctypes.c_int(0)
        self._state = self._lib.opus_decoder_create(SAMPLE_RATE, 1, ctypes.byref(error))
        if not self._state or error.value != 0:
            raise OpusError(f"opus_decoder_create failed ({error.value})")
        # libopus may return up to 120 ms from one packet: room for it, one 20 ms frame used
        self._pcm = np.zeros(FRAME_SAMPLES * 6, np.int16)
        self._missing = 0
        self.fec = self.concealed = self.corrupt = 0

    def __del__(self) -> None:
        state, self._state = getattr(self, "_state", None), None
        if state:
            self._lib.opus_decoder_destroy(state)

    def decode(self, payload: bytes) -> np.ndarray:
        """One 20 ms frame of 48 kHz samples from a packet (a corrupt one is concealed)."""
        if len(payload) > MAX_PAYLOAD or not payload:
            self.corrupt += 1
            return self.conceal()
        count = self._call(payload, FRAME_SAMPLES * 6, fec=False)
        if count < 0:
            self.corrupt += 1
            return self.conceal()
        self._missing = 0
        return self._frame(count)

    def recover(self, next_payload: bytes | None) -> np.ndarray:
        """A lost frame: rebuilt from `next_payload`'s in-band FEC when it carries any, else
        concealed (after PLC_FRAMES in a row, silence)."""
        if next_payload and len(next_payload) <= MAX_PAYLOAD:
            count = self._call(next_payload, FRAME_SAMPLES, fec=True)
            if count > 0:
                self.fec += 1
                self._missing = 0
                return self._frame(count)
        return self.conceal()

    def conceal(self) -> np.ndarray:
        self._missing += 1
        if self._missing > PLC_FRAMES:
            return np.zeros(FRAME_SAMPLES, np.int16)
        self.concealed += 1
        count = self._call(None, FRAME_SAMPLES, fec=False)
        return self._frame(max(count, 0))

    def _call(self, payload: bytes | None, frame_size: int, fec: bool) -> int:
        return int(
            self._lib.opus_decode(
                self._state,
                payload,
                len(payload) if payload else 0,
                self._pcm.ctypes.data,
                frame_size,
                1 if fec else 0,
            )
        )

    def _frame(self, count: int) -> np.ndarray:
        out = np.zeros(FRAME_SAMPLES, np.int16)
        used = min(count, FRAME_SAMPLES)
        out[:used] = self._pcm[:used]
        return out
