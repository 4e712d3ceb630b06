"""Rooms with G.722 and Opus members (bridge/mixing/multirate.py): mixed at the highest member
rate, each member resampled in and out, driven through the engine as a worker drives it.

Each simulated phone encodes its own tones with a real encoder (PyAV's G.722 and libopus, the
G.711 tables) and decodes what it is sent with a real decoder; an FFT says what it heard.
"""

from __future__ import annotations

import wave
from itertools import pairwise

import numpy as np

from bridge.media.codecs import MediaCodec, WidebandCodec, codec_for, native_rate
from bridge.media.g711 import Codec
from bridge.media.opus import OpusEncoder, OpusParams
from bridge.media.tones import ToneSource, sine, tone_levels
from bridge.mixing.backend import DigitPressed, RemoveParticipant, TalkingChanged
from bridge.mixing.engine import MediaEngine
from bridge.mixing.participant import Participant
from bridge.mixing.workers.handoff import pack, unpack
from bridge.rtp.jitter import JitterBuffer
from bridge.rtp.packet import RtpSender, parse_rtp

HEARD_DB = -35.0
ABSENT_DB = -60.0
OPUS_PT = 96


class Phone:
    """A member of `codec` speaking `tones` (Hz), recording what it hears at its own rate."""

    def __init__(self, engine: MediaEngine, name: str, codec: MediaCodec, tones: list[float]):
        self.codec = codec
        self.rate = native_rate(codec)
        member = Participant(
            id=name, call_key=name, room="(lobby)", caller=name, display_name="",
            codec=codec, remote=("127.0.0.1", 4000 + len(engine.members)),
            signalling_host="127.0.0.1", send=self.receive, jitter=JitterBuffer(2, 3),
        )
        member.jitter.clock_rate = codec.clock_rate
        self.member = unpack(pack(member))  # as a worker receives it: codec state rebuilt
        self.member.send = self.receive
        engine.add(self.member, "r")
        self.sources = [ToneSource(f, 5000, self.rate) for f in tones]
        self.sender = RtpSender(payload_type=codec.payload_type)
        if isinstance(codec, WidebandCodec):
            self.encoder = codec.new_encoder()
            self.decoder = codec.new_decoder()
        self.heard: list[np.ndarray] = []
        self.payload_types: set[int] = set()
        self.timestamps: list[int] = []

    def speak(self, now: float) -> None:
        samples = self.rate // 50
        frame = sum(s.next_frame(samples).astype(np.int32) for s in self.sources)
        frame = np.asarray(frame, np.int32).astype(np.int16) if self.sources else np.zeros(
            samples, np.int16)
        payload = self.codec.encode(frame) if isinstance(self.codec, Codec) else (
            self.encoder.encode(frame))
        packet = self.sender.packet(payload, self.codec.clock_rate // 50)
        self.member.receive_rtp(packet, self.member.remote, now)

    def receive(self, data: bytes, address: tuple[str, int]) -> None:
        packet = parse_rtp(data)
        self.payload_types.add(packet.payload_type)
        self.timestamps.append(packet.timestamp)
        if isinstance(self.codec, Codec):
            self.heard.append(self.codec.decode(packet.payload))
        else:
            self.heard.append(self.decoder.decode(packet.payload))

    def levels(self, freqs: list[float], since: int = 25) -> dict[float, float]:
        return tone_levels(np.concatenate(self.heard[since:]), freqs, self.rate)


def run(engine: MediaEngine, phones: list[Phone], ticks: int, start: int = 0) -> list:
    reports = []
    for tick in range(start, start + ticks):
        for phone in phones:
            phone.speak(tick * 0.02)
        engine.tick(tick * 0.02 + 0.001, tick * 0.02)
        reports += engine.take_reports()
    return reports


def payloads_arriving(phone: Phone) -> list[bytes]:
    """The payloads of the packets reaching `phone`'s member, in order, as they arrive."""
    sent: list[bytes] = []
    original = phone.member.receive_rtp

    def keep(data: bytes, source: tuple[str, int], now: float) -> None:
        sent.append(parse_rtp(data).payload)
        original(data, source, now)

    phone.member.receive_rtp = keep  # type: ignore[method-assign]
    return sent


def opus(fmtp: str | None = None) -> MediaCodec:
    return codec_for("OPUS", OPUS_PT, fmtp)


def test_pcmu_g722_and_opus_each_hear_the_others_and_wideband_tones_reach_wideband_ears():
    engine = MediaEngine()
    narrow = Phone(engine, "pcmu", codec_for("PCMU"), [500.0])
    g722 = Phone(engine, "g722", codec_for("G722"), [900.0, 5500.0])
    wide = Phone(engine, "opus", opus("useinbandfec=1"), [1300.0, 7000.0])
    run(engine, [narrow, g722, wide], 75)
    assert engine.rooms["r"].wideband is not None and engine.rooms["r"].wideband.rate == 48000

    heard = narrow.levels([500, 900, 1300])
    assert heard[900] > HEARD_DB and heard[1300] > HEARD_DB and heard[500] < ABSENT_DB
    heard = g722.levels([500, 900, 1300, 5500, 7000])
    assert heard[500] > HEARD_DB and heard[1300] > HEARD_DB and heard[7000] > HEARD_DB
    assert heard[900] < ABSENT_DB and heard[5500] < ABSENT_DB
    heard = wide.levels([500, 900, 1300, 5500, 7000])
    assert heard[500] > HEARD_DB and heard[900] > HEARD_DB and heard[5500] > HEARD_DB
    assert heard[1300] < ABSENT_DB and heard[7000] < ABSENT_DB
    assert wide.payload_types == {OPUS_PT} and g722.payload_types == {9}
    steps = set(np.diff(wide.timestamps).tolist())
    assert steps == {960} and set(np.diff(g722.timestamps).tolist()) == {160}


def test_a_talker_heard_only_above_4_khz_is_mixed_while_someone_keys_in_band():
    """Gating and talking work on the room's rate: an 8 kHz copy would hide this talker."""
    engine = MediaEngine()
    high = Phone(engine, "high", opus(), [6500.0])  # no telephone-event: keys in-band
    listener = Phone(engine, "listener", codec_for("G722"), [])
    reports = run(engine, [high, listener], 40)
    assert listener.levels([6500])[6500] > HEARD_DB
    assert TalkingChanged("high", True) in reports


def test_listeners_of_one_codec_share_the_total_and_a_g711_room_stays_narrow():
    engine = MediaEngine()
    talker = Phone(engine, "talker", codec_for("G722"), [1000.0])
    listeners = [Phone(engine, f"l{i}", opus(), []) for i in range(3)]
    run(engine, [talker, *listeners], 30)
    mix = engine.rooms["r"].wideband
    assert mix is not None and [k for k in mix.shared if k[0] == "OPUS"] == [("OPUS", OpusParams())]
    for listener in listeners:
        assert listener.member.stream is not None and listener.member.stream.own_encoder is None
    assert listeners[0].heard[-1].tobytes() == listeners[2].heard[-1].tobytes()

    # once the wideband members leave, the room mixes at 8 kHz again, on the G.711 path
    pcmu = [Phone(engine, f"p{i}", codec_for("PCMU"), [700.0]) for i in range(2)]
    for phone in [talker, *listeners]:
        engine.apply(RemoveParticipant(phone.member.call_key))
    run(engine, pcmu, 30, start=30)
    assert pcmu[0].levels([700])[700] > HEARD_DB


def test_talking_and_inband_keys_are_detected_in_a_48_khz_room():
    engine = MediaEngine()
    keyer = Phone(engine, "keyer", codec_for("G722"), [770.0, 1336.0])  # the key 5
    other = Phone(engine, "other", opus(), [])
    assert DigitPressed("keyer", "5", "inband") in run(engine, [keyer, other], 20)

    engine = MediaEngine()
    talker = Phone(engine, "talker", opus(), [440.0])
    talker.member.telephone_event_pt = 101
    quiet = Phone(engine, "quiet", codec_for("G722"), [])
    reports = run(engine, [talker, quiet], 20)
    assert TalkingChanged("talker", True) in reports
    assert not any(isinstance(r, TalkingChanged) and r.leg == "quiet" for r in reports)


def test_lost_opus_packet_is_rebuilt_from_fec_and_a_corrupt_one_concealed():
    engine = MediaEngine()
    talker = Phone(engine, "talker", opus(), [1000.0])
    talker.encoder = OpusEncoder(OpusParams(inband_fec=True))
    listener = Phone(engine, "listener", codec_for("PCMU"), [])
    run(engine, [talker, listener], 20)
    talker.sender.packet(talker.encoder.encode(np.zeros(960, np.int16)), 960)  # never arrives
    run(engine, [talker, listener], 20, start=21)
    decoder = talker.member.stream.decoder  # type: ignore[union-attr]
    assert decoder.fec == 1
    stats = engine.stats("talker")
    assert stats is not None and stats.lost == 1

    bad = talker.sender.packet(b"\xff" * 7, 960)
    talker.member.receive_rtp(bad, talker.member.remote, 0.9)
    run(engine, [talker, listener], 10, start=41)
    assert engine.stats("talker").counters.bad_packets == 1  # type: ignore[union-attr]
    assert listener.levels([1000], since=45)[1000] > HEARD_DB  # the call carries on


def test_g722_packet_of_the_wrong_size_is_counted_and_the_room_carries_on():
    engine = MediaEngine()
    talker = Phone(engine, "talker", codec_for("G722"), [1000.0])
    listener = Phone(engine, "listener", codec_for("PCMU"), [])
    run(engine, [talker, listener], 10)
    talker.member.receive_rtp(talker.sender.packet(b"\x00" * 1000, 160), talker.member.remote, 0.2)
    run(engine, [talker, listener], 30, start=11)
    assert engine.stats("talker").counters.bad_packets == 1  # type: ignore[union-attr]
    assert listener.levels([1000])[1000] > HEARD_DB


def test_opus_dtx_silence_is_no_loss_and_no_talk():
    """A DTX sender stops sending in silence (sequence numbers carry on, timestamps jump): no
    packet counts as lost, the codec conceals a few frames then gives silence, no talking."""
    engine = MediaEngine()
    talker = Phone(engine, "talker", opus(), [])  # silence, as DTX would stop on
    listener = Phone(engine, "listener", codec_for("PCMU"), [])
    run(engine, [talker, listener], 20)
    for tick in range(20, 70):  # one second without packets
        listener.speak(tick * 0.02)
        engine.tick(tick * 0.02 + 0.001, tick * 0.02)
    talker.sender.timestamp = (talker.sender.timestamp + 50 * 960) & 0xFFFFFFFF
    reports = run(engine, [talker, listener], 20, start=70) + engine.take_reports()
    stats = engine.stats("talker")
    assert stats is not None and stats.lost == 0
    decoder = talker.member.stream.decoder  # type: ignore[union-attr]
    assert 0 < decoder.concealed <= 5
    assert not any(isinstance(r, TalkingChanged) for r in reports)


def test_a_lone_talker_reaches_listeners_of_its_codec_as_it_sent_it():
    """One member heard and listeners of the same codec: its packets go on as they came (no
    second G.722 or Opus encoding); a listener of another codec still gets the mix encoded."""
    engine = MediaEngine()
    talker = Phone(engine, "talker", codec_for("G722"), [1000.0])
    sent = payloads_arriving(talker)
    same = Phone(engine, "same", codec_for("G722"), [])
    other = Phone(engine, "other", opus(), [])
    payloads: list[bytes] = []
    same.member.send = lambda data, address: payloads.append(parse_rtp(data).payload)
    run(engine, [talker, same, other], 30)
    start = sent.index(payloads[-10])  # some frames of jitter buffer behind
    assert payloads[-10:] == sent[start : start + 10]
    assert other.levels([1000.0], since=10)[1000.0] > HEARD_DB


def test_a_lone_talkers_lost_packet_reaches_listeners_of_its_codec_as_a_gap():
    """The lone talker's packet lost on its way in: listeners who get its packets as they came
    get nothing in that tick (a gap in the sequence numbers, the timestamp moved on), so their
    own decoder rebuilds the frame from the next packet's FEC, rather than a frame of our
    encoder in the middle of the talker's stream."""
    engine = MediaEngine()
    talker = Phone(engine, "talker", opus(), [1000.0])
    talker.encoder = OpusEncoder(OpusParams(inband_fec=True))
    sent = payloads_arriving(talker)
    listener = Phone(engine, "listener", opus(), [])
    got: list[tuple[int, int, bytes]] = []

    def receive(data: bytes, address: tuple[str, int]) -> None:
        packet = parse_rtp(data)
        got.append((packet.sequence, packet.timestamp, packet.payload))

    listener.member.send = receive
    run(engine, [talker, listener], 20)
    lost = talker.encoder.encode(np.zeros(960, np.int16))
    talker.sender.packet(lost, 960)  # never arrives
    run(engine, [listener], 1, start=20)  # the bridge's tick goes on (a skipped tick jumps)
    run(engine, [talker, listener], 20, start=21)
    assert talker.member.stream.decoder.fec == 1  # type: ignore[union-attr]
    steps = [((b[0] - a[0]) & 0xFFFF, (b[1] - a[1]) & 0xFFFF_FFFF) for a, b in pairwise(got)]
    assert steps.count((2, 1920)) == 1 and steps.count((1, 960)) == len(steps) - 1
    gap = steps.index((2, 1920))
    around = [sent.index(payload) for _, _, payload in got[gap - 4 :]]  # all the talker's
    assert around == list(range(around[0], around[0] + len(around)))  # none but the lost one


def test_a_lone_talkers_pause_goes_on_as_it_sent_it_until_it_is_muted():
    """Between its words (quiet frames, nobody heard) the last lone talker's packets still go
    to the listeners of its codec as they came, so their decoder never switches streams; once
    it is muted, our encoder's silence goes out instead."""
    engine = MediaEngine()
    talker = Phone(engine, "talker", opus(), [1000.0])
    sent = payloads_arriving(talker)
    listener = Phone(engine, "listener", opus(), [])
    got: list[bytes] = []
    listener.member.send = lambda data, address: got.append(parse_rtp(data).payload)
    run(engine, [talker, listener], 20)
    talker.sources = []  # a pause, past the talking state's hang-over
    run(engine, [talker, listener], 60, start=21)
    assert not talker.member.voice.talking
    assert all(payload in sent for payload in got[5:])
    talker.member.muted = True
    run(engine, [talker, listener], 10, start=81)
    assert not any(payload in sent for payload in got[-5:])


def test_an_uploaded_announcement_plays_at_the_rooms_rate(tmp_path):
    """An announcement stored at 48 kHz (as uploads are) keeps its 6 kHz to wideband ears: the
    Opus member hears it at 48 kHz, the G.722 one at 16 kHz; the PCMU one at 8 kHz hears its
    1 kHz only (an 8 kHz copy would have cut the 6 kHz for everyone)."""
    path = tmp_path / "welcome.wav"
    tones = sine(1000.0, 2.0, amplitude=6000, rate=48000).astype(np.int32) + sine(
        6000.0, 2.0, amplitude=6000, rate=48000)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(48000)
        wav.writeframes(tones.astype("<i2").tobytes())
    engine = MediaEngine()
    phones = [Phone(engine, name, codec, []) for name, codec in (
        ("opus", opus()), ("g722", codec_for("G722")), ("pcmu", codec_for("PCMU")))]
    run(engine, phones, 5)
    for phone in phones:
        phone.member.prompts.play(str(path))
    run(engine, phones, 60, start=5)
    for phone in phones[:2]:
        got = phone.levels([1000.0, 6000.0], since=15)
        assert min(got.values()) > HEARD_DB, (phone.member.id, got)
    got = phones[2].levels([1000.0], since=15)
    assert got[1000.0] > HEARD_DB, got
