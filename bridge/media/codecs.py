"""Every codec a leg can negotiate, as the engine sees it: G.711 (stateless tables, 8 kHz) and
the stateful wideband codecs through PyAV (G.722 at 16 kHz, Opus at 48 kHz).

A G.711 `Codec` is shared by every stream; a `WidebandCodec` is a description (payload type,
rates, the peer's Opus parameters) from which each stream makes its own decoder and each
distinct outgoing mix its own encoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from bridge.media import g722, opus
from bridge.media.g711 import CODECS as G711_CODECS
from bridge.media.g711 import Codec
from bridge.media.opus import OpusParams

G722 = "G722"
OPUS = "OPUS"
SUPPORTED = ("OPUS", "G722", "PCMU", "PCMA")
"""Every codec name the bridge answers with, in the default preference order."""


class Encoder(Protocol):
    def encode(self, samples: np.ndarray) -> bytes: ...


@dataclass(frozen=True)
class WidebandCodec:
    """A negotiated G.722 or Opus stream: `clock_rate` is the RTP clock, `sample_rate` the
    audio's (G.722 keeps an 8000 RTP clock for 16 kHz audio, RFC 3551 §4.5.2)."""

    name: str
    payload_type: int
    clock_rate: int
    sample_rate: int
    params: OpusParams | None = None

    @property
    def mixing_rate(self) -> int:
        return self.params.mixing_rate if self.params is not None else self.sample_rate

    @property
    def frame_samples(self) -> int:
        return self.sample_rate // 50

    @property
    def encoder_key(self) -> tuple[str, OpusParams | None]:
        """Listeners whose codecs have equal keys can share one encoder's packets."""
        return (self.name, self.params)

    def new_decoder(self) -> g722.G722Decoder | opus.OpusDecoder:
        return g722.G722Decoder() if self.name == G722 else opus.OpusDecoder()

    def new_encoder(self) -> Encoder:
        if self.name == G722:
            return g722.G722Encoder()
        return opus.OpusEncoder(self.params or OpusParams())


MediaCodec = Codec | WidebandCodec


def codec_for(name: str, payload_type: int | None = None, fmtp: str | None = None) -> MediaCodec:
    """The engine's codec for a negotiated name ("PCMU", "G722", "OPUS", ...), with the
    payload type and fmtp SDP settled (G.711 and G.722 have static types)."""
    upper = name.upper()
    if upper in G711_CODECS:
        return G711_CODECS[upper]
    if upper == G722:
        return WidebandCodec(G722, 9, 8000, g722.SAMPLE_RATE)
    if upper == OPUS:
        if payload_type is None:
            raise ValueError("Opus needs its dynamic payload type")
        return WidebandCodec(OPUS, payload_type, opus.CLOCK_RATE, opus.SAMPLE_RATE,
                             OpusParams.parse(fmtp))
    raise ValueError(f"unsupported codec {name!r}")


def mixing_rate(codec: MediaCodec) -> int:
    """The rate a member of this codec needs the room to mix at."""
    return codec.mixing_rate if isinstance(codec, WidebandCodec) else codec.clock_rate


def native_rate(codec: MediaCodec) -> int:
    """The rate of the samples the codec decodes to and encodes from."""
    return codec.sample_rate if isinstance(codec, WidebandCodec) else codec.clock_rate
