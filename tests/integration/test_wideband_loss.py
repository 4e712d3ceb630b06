"""Check 3 of the wideband issue on a real lossy path: Opus speech with 10 % random loss.

baresip (Opus, 32 kb/s VoIP mode) says espeak-ng's speech into a room through `LossyRelay`,
which drops 10 % of its RTP packets at random on the way to the bridge; linphone (Opus) listens
through a relay that drops nothing and keeps what the bridge sent it. The sender's in-band FEC
is on (`opus_packet_loss 10`: libopus adds the redundancy only when told to expect loss, and
only in its SILK and hybrid modes, which baresip's default 128 kb/s "audio" mode never uses),
then off (`opus_packet_loss 0`). The room forwards the lone talker's packets, gaps included,
so the listener's decoder rebuilds a lost frame from the next packet, as on a direct call.

PESQ (P.862.2, at 16 kHz) against what baresip was given, of: what baresip sent (all its
packets, before the losses), what the bridge sent linphone (decoded as a phone does: a gap in
the sequence numbers rebuilt from the next packet's FEC, or concealed) and what linphone played
(its own recording). Measured (2-core machine shared with other sessions): FEC 1.8-2.6,
concealment alone 1.4-1.7, baresip's own stream 3.47 (FEC) / 4.17; without loss, what the
bridge sends scores 2.6-3.1: the rest of the gap to 3.47 is the bridge's tick-paced jitter
buffer on real timing (a late packet waited for and concealed, a burst trimmed). In process,
with the timing fixed, the same path gives FEC 2.79, concealment 1.58 (scripts/pesq_rooms.py).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from bridge.media.opus import OpusDecoder
from bridge.rtp.packet import parse_rtp
from bridge.server import BridgeServer
from tests.integration.baresip import Baresip
from tests.integration.harness import LOOPBACK
from tests.integration.linphone import Linphone
from tests.integration.lossy_relay import LossyRelay
from tests.integration.speech import pesq_score, resampled, speech_source, to_wav
from tests.integration.test_softphone import members

pytestmark = pytest.mark.integration

LOSS = 0.1
OPUS_SENDER = """\
opus_application	voip
opus_bitrate		32000
opus_packet_loss	{loss_percent}
"""


async def speech_through_lossy_path(
    bridge: BridgeServer, tmp_path: Path, loss_percent: int
) -> tuple[float, LossyRelay]:
    room, port = "lossy", bridge.transports.udp_port
    tmp_path.mkdir()
    reference = speech_source(tmp_path / "speech.wav")
    listener = Linphone(tmp_path / "listener", user="listener",
                        source_file=tmp_path / "quiet.wav")
    (tmp_path / "quiet.wav").write_bytes(to_wav(np.zeros(48000 * 30, np.int16), 48000))
    talker = Baresip(tmp_path / "talker", tone_hz=440, user="talker", codecs="opus/48000/2",
                     source_file=tmp_path / "speech.wav",
                     extra_config=OPUS_SENDER.format(loss_percent=loss_percent))
    relay, clean = LossyRelay(port, LOSS), LossyRelay(port, 0.0)
    relay.start()
    clean.start()
    try:
        await listener.start()
        await listener.dial(f"sip:{room}@{LOOPBACK}:{clean.sip_port}")
        await talker.start()
        await talker.dial(f"sip:{room}@{LOOPBACK}:{relay.sip_port}")
        await members(bridge, room, 2)
        await asyncio.sleep(reference.size / 16000 + 1.5)
        (seen,) = [p for p in bridge.control.participants(room) if p.caller == "talker"]
        # the bridge counts the relay's drops as the stream's loss (more may follow the BYE)
        assert seen.codec == "OPUS" and 0 < seen.packets_lost <= relay.dropped, (seen, relay)
        await talker.hangup()
        await listener.hangup()
    finally:
        await talker.stop()
        await listener.stop()
        relay.close()
        clean.close()
    heard, rate = listener.heard()
    assert rate == 48000, rate
    decoded = {
        "baresip sent (before the losses)": as_a_phone_decodes(relay.from_phone),
        "the bridge sent linphone": as_a_phone_decodes(clean.to_phone),
        "linphone played": heard,
    }
    scores = {label: pesq_score(reference, resampled(to_wav(audio, 48000), 16000))
              for label, audio in decoded.items()}
    print(f"opus_packet_loss {loss_percent}: PESQ WB", {k: round(v, 2) for k, v in scores.items()})
    return scores["the bridge sent linphone"], relay


def as_a_phone_decodes(packets: list[bytes]) -> np.ndarray:
    """48 kHz audio of an Opus RTP stream, a missing packet rebuilt from the next one's FEC
    (concealed when more are missing), as a phone's jitter buffer and decoder do."""
    decoder = OpusDecoder()
    heard: list[np.ndarray] = []
    previous: int | None = None
    parsed = [parse_rtp(data) for data in packets]
    ((opus, _),) = Counter(p.payload_type for p in parsed).most_common(1)  # not telephone-event
    for packet in parsed:
        if packet.payload_type != opus:
            continue
        missing = 0 if previous is None else (packet.sequence - previous - 1) & 0xFFFF
        previous = packet.sequence
        heard += [decoder.conceal() for _ in range(missing - 1)]
        if missing:
            heard.append(decoder.recover(packet.payload))
        heard.append(decoder.decode(packet.payload))
    return np.concatenate(heard)


async def test_opus_speech_with_10_percent_loss_through_a_relay_fec_against_concealment(
    bridge: BridgeServer, tmp_path: Path
) -> None:
    """Both runs in one room set-up's test: the loss is real (the relay's drops, counted by the
    bridge as the stream's loss) and FEC beats concealment alone. The scores vary from run to
    run with the timing of real phones (see the module docstring; in process, with the timing
    fixed, the same path gives 2.79 and 1.58: scripts/pesq_rooms.py)."""
    with_fec, relay = await speech_through_lossy_path(bridge, tmp_path / "fec", 10)
    lost = relay.dropped / (relay.dropped + relay.forwarded)
    assert 0.05 < lost < 0.15, (relay.dropped, relay.forwarded)
    without_fec, _ = await speech_through_lossy_path(bridge, tmp_path / "plc", 0)
    print(f"PESQ WB at {lost:.0%} loss: FEC {with_fec:.2f}, concealment only {without_fec:.2f}")
    assert with_fec > without_fec, (with_fec, without_fec)
