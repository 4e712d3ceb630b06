"""Speech quality through a room, by PESQ (P.862; P.862.2 wideband), against the codec alone.

A talker sends speech (espeak-ng's, or `--speech FILE`) into a room of two through the bridge's
engine (the reference tick: jitter buffer, decode, resample to the room's rate, mix, resample,
encode); the listener decodes what it is sent. The same speech through the codec alone (encode,
decode: the direct phone-to-phone path) is the yardstick. Opus is also run with 10 % random
packet loss, with and without in-band FEC, on both paths (the same packets lost; the listening
phone rebuilds or conceals what it misses, as the room forwards a lone talker's gaps). In
process, no sockets, so the scores are the audio path's, not the network's (the real lossy
path, through a relay and real softphones: tests/integration/test_wideband_loss.py).

    .venv/bin/python scripts/pesq_rooms.py [--speech FILE] [--loss 0.1] [--seed 1]
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import av
import numpy as np
from pesq import pesq

from bridge.media.codecs import Encoder, MediaCodec, WidebandCodec, codec_for, native_rate
from bridge.media.opus import OpusDecoder, OpusEncoder, OpusParams
from bridge.mixing.engine import MediaEngine
from bridge.mixing.participant import Participant, SendFunction
from bridge.rtp.jitter import JitterBuffer
from bridge.rtp.packet import RtpSender, parse_rtp
from bridge.tools.audio_files import decode_mono

TEXT = (
    "The quick brown fox jumps over the lazy dog. A conference bridge mixes the voices of "
    "everyone in the room, and each person hears the others but not themself. Seven, eight, "
    "nine, ten: the meeting starts at half past three on Thursday."
)


def load_speech(path: str | None) -> bytes:
    if path:
        with open(path, "rb") as file:
            return file.read()
    return subprocess.run(["espeak-ng", "--stdout", TEXT], check=True, capture_output=True).stdout



def frames_of(samples: np.ndarray, size: int) -> list[np.ndarray]:
    padded = np.concatenate([samples, np.zeros(-samples.size % size + 25 * size, np.int16)])
    return [padded[i : i + size] for i in range(0, padded.size, size)]


class Listener:
    """The listening phone: decodes what the room sends; a gap in the sequence numbers (the
    room forwards the talker's packets and so its losses too) is rebuilt from the packet after
    it (Opus FEC) or concealed, as a phone's jitter buffer and decoder do."""

    def __init__(self, media: MediaCodec) -> None:
        self.media = media
        self.decoder = media.new_decoder() if isinstance(media, WidebandCodec) else None
        self.heard: list[np.ndarray] = []
        self.sequence: int | None = None

    def send(self, data: bytes, address: tuple[str, int]) -> None:
        packet = parse_rtp(data)
        payload = packet.payload
        missing = 0 if self.sequence is None else (packet.sequence - self.sequence - 1) & 0xFFFF
        self.sequence = packet.sequence
        if self.decoder is None:
            frame = self.media.decode(payload)  # type: ignore[union-attr]
            self.heard += [np.zeros_like(frame)] * missing + [frame]
            return
        if isinstance(self.decoder, OpusDecoder):
            self.heard += [self.decoder.conceal() for _ in range(missing - 1)]
            if missing:
                self.heard.append(self.decoder.recover(payload))
        else:
            self.heard += [np.zeros(self.media.frame_samples, np.int16)] * missing
        self.heard.append(self.decoder.decode(payload))


def member(engine: MediaEngine, name: str, media: MediaCodec, send: SendFunction) -> Participant:
    participant = Participant(
        id=name, call_key=name, room="r", caller=name, display_name="", codec=media,
        remote=("127.0.0.1", 4000 + len(engine.members)), signalling_host="127.0.0.1",
        send=send, jitter=JitterBuffer(2, 3),
    )
    participant.jitter.clock_rate = media.clock_rate
    participant.jitter.rebuilds_lost = media.name == "OPUS"
    participant.telephone_event_pt = 101
    engine.add(participant, "r")
    return participant


def through_room(media: MediaCodec, speech: np.ndarray, loss: float, fec: bool,
                 seed: int) -> np.ndarray:
    engine = MediaEngine()
    listener = Listener(media)
    talker = member(engine, "talker", media, lambda data, address: None)
    member(engine, "listener", media, listener.send)
    encoder = talker_encoder(media, fec)
    sender = RtpSender(payload_type=media.payload_type)
    rng = np.random.default_rng(seed)
    step = media.clock_rate // 50
    for tick, frame in enumerate(frames_of(speech, native_rate(media) // 50)):
        packet = sender.packet(encoder.encode(frame), step)
        if rng.random() >= loss:
            talker.receive_rtp(packet, talker.remote, tick * 0.02)
        engine.tick(tick * 0.02 + 0.001, tick * 0.02)
    return np.concatenate(listener.heard)


def talker_encoder(media: MediaCodec, fec: bool) -> Encoder:
    """What the talking phone encodes with: Opus with or without in-band FEC (packet loss
    expected: 10 %), G.722 and G.711 as they are."""
    if not isinstance(media, WidebandCodec):
        return media
    if media.name == "OPUS":
        return OpusEncoder(OpusParams(inband_fec=fec))
    return media.new_encoder()


def direct(media: MediaCodec, speech: np.ndarray, loss: float = 0.0, fec: bool = True,
           seed: int = 1) -> np.ndarray:
    """The codec alone: what a phone talking straight to another would hear, over the same
    lossy path (the same packets lost; the listener rebuilds a lost Opus frame from the next
    packet's FEC, else conceals it)."""
    if not isinstance(media, WidebandCodec):
        return np.concatenate([media.decode(media.encode(f)) for f in frames_of(speech, 160)])
    encoder, decoder = talker_encoder(media, fec), media.new_decoder()
    packets = [encoder.encode(f) for f in frames_of(speech, media.frame_samples)]
    rng = np.random.default_rng(seed)
    arrived = [rng.random() >= loss for _ in packets]
    heard = []
    for i, packet in enumerate(packets):
        if arrived[i]:
            heard.append(decoder.decode(packet))
        else:
            following = packets[i + 1] if i + 1 < len(packets) and arrived[i + 1] else None
            heard.append(decoder.recover(following))  # type: ignore[union-attr]
    return np.concatenate(heard)


def score(reference: np.ndarray, degraded: np.ndarray, rate: int) -> float:
    """PESQ at 16 kHz (wideband) or 8 kHz (narrowband); 48 kHz audio is resampled first."""
    if rate == 48000:
        reference, degraded = (downsample(x, 48000, 16000) for x in (reference, degraded))
        rate = 16000
    mode = "wb" if rate == 16000 else "nb"
    length = min(reference.size, degraded.size)
    return float(pesq(rate, reference[:length].astype(np.float64),
                      degraded[:length].astype(np.float64), mode))


def downsample(samples: np.ndarray, rate: int, to: int) -> np.ndarray:
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="s16", layout="mono", rate=to)
    out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(out)


def run(speech_file: str | None, loss: float, seed: int) -> list[tuple[str, float, float]]:
    data = load_speech(speech_file)
    rows = []
    for name, label in (("PCMU", "G.711 (narrowband P.862)"), ("G722", "G.722 (P.862.2)"),
                        ("OPUS", "Opus 48 kHz (P.862.2 at 16 kHz)")):
        media = codec_for(name, 96)
        rate = native_rate(media)
        speech = decode_mono(data, rate)
        room = score(speech, through_room(media, speech, 0.0, True, seed), rate)
        rows.append((label, round(score(speech, direct(media, speech), rate), 2), round(room, 2)))
    opus = codec_for("OPUS", 96)
    speech = decode_mono(data, 48000)
    for fec in (True, False):
        heard = through_room(opus, speech, loss, fec, seed)
        alone = direct(opus, speech, loss, fec, seed)
        rows.append((f"Opus, {loss:.0%} loss, FEC {'on' if fec else 'off'}",
                     round(score(speech, alone, 48000), 2), round(score(speech, heard, 48000), 2)))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speech", help="a speech file PyAV reads (default: espeak-ng's)")
    parser.add_argument("--loss", type=float, default=0.1, help="Opus loss rate (0.1)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    print(f"{'path':<34} {'codec alone':>12} {'through a room':>15}")
    for label, alone, room in run(args.speech, args.loss, args.seed):
        print(f"{label:<34} {alone:>12} {room:>15}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
