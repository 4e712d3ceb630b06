"""A member's state in a room mixed by the multi-rate tick: its own decoder (G.722, Opus), its
own encoder (used only while it talks and so hears a mix of its own), and the resamplers
between its codec's rate and the room's.

Why apart from `Participant`: PyAV codec contexts and libopus decoders do not pickle, so a
hand-over to a media worker drops this and the worker's first tick rebuilds it. The decoder
survives a change of the room's rate (its history is the stream's); the resamplers do not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bridge.media.codecs import Encoder, MediaCodec, WidebandCodec, native_rate
from bridge.media.g722 import G722Decoder
from bridge.media.mixer import Concealer
from bridge.media.opus import OpusDecoder
from bridge.media.resample import Resampler

PROMPT_RATE = 8000  # the packaged prompts and the hold music


@dataclass(eq=False)
class StreamState:
    codec: MediaCodec
    room_rate: int
    decoder: G722Decoder | OpusDecoder | None = None
    concealer: Concealer | None = None  # G.722: FFmpeg's decoder has no concealment
    own_encoder: Encoder | None = None
    payload: bytes | None = None  # this tick's packet as it came, when decoded cleanly
    to_room: Resampler = field(init=False)
    from_room: Resampler = field(init=False)
    to_8k: Resampler = field(init=False)  # in-band DTMF detection runs at 8 kHz
    prompt_up: Resampler = field(init=False)

    def __post_init__(self) -> None:
        self.at_rate(self.room_rate)
        rate = native_rate(self.codec)
        self.prompt_up = Resampler(PROMPT_RATE, rate)
        if isinstance(self.codec, WidebandCodec):
            self.decoder = self.codec.new_decoder()
            if isinstance(self.decoder, G722Decoder):
                self.concealer = Concealer(self.codec.frame_samples)

    def at_rate(self, room_rate: int) -> None:
        """The room now mixes at `room_rate`: new resamplers (the codec state stays)."""
        rate = native_rate(self.codec)
        self.room_rate = room_rate
        self.to_room = Resampler(rate, room_rate)
        self.from_room = Resampler(room_rate, rate)
        self.to_8k = Resampler(room_rate, PROMPT_RATE)

    def encoder(self) -> Encoder:
        """This member's own encoder (G.711: the stateless codec itself)."""
        if self.own_encoder is None:
            codec = self.codec
            self.own_encoder = codec.new_encoder() if isinstance(codec, WidebandCodec) else codec
        return self.own_encoder

    def silence(self) -> np.ndarray:
        return np.zeros(native_rate(self.codec) // 50, np.int16)
