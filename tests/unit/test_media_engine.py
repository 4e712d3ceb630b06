"""The media engine (below the seam, in-process or in a worker) driven by hand: the seam's
commands in, RTP in, ticks, reports and packets out.

No process and no socket: participants are packed as the main process packs them for a worker,
and their `send` goes to a Wire that decodes what they would be sent.
"""

from __future__ import annotations

import numpy as np
import pytest

from bridge.media.g711 import CODECS
from bridge.media.tones import ToneSource, tone_levels
from bridge.mixing.backend import (
    ClearPrompts,
    Controls,
    DigitPressed,
    PlayPrompt,
    PromptsIdle,
    RemoveParticipant,
    SetRoomMixing,
    TalkingChanged,
    UpdateControls,
)
from bridge.mixing.engine import MediaEngine
from bridge.mixing.participant import Participant
from bridge.mixing.workers.handoff import pack, unpack
from bridge.mixing.workers.protocol import decode, encode
from bridge.net.mixer_clock import LATENESS_BUCKETS, LatenessHistogram
from bridge.rtp.jitter import JitterBuffer
from bridge.rtp.packet import RtpSender, build_rtp, parse_rtp
from tests.unit.test_room import TONES, Wire

HEARD_DB = -30.0
ABSENT_DB = -55.0


def participant(name: str, codec: str = "PCMU", port: int = 4000) -> Participant:
    return Participant(
        id=name,
        call_key=f"key-{name}",
        room="(lobby)",
        caller=name,
        display_name="",
        codec=CODECS[codec],
        remote=("127.0.0.1", port),
        signalling_host="127.0.0.1",
        send=lambda data, address: None,
        jitter=JitterBuffer(2, 3),
    )


class Call:
    """One simulated phone on the engine: streams its tone, records what it is sent."""

    def __init__(self, engine: MediaEngine, name: str, room: str = "r", codec: str = "PCMU"):
        self.member = participant(name, codec, 4000 + len(engine.members))
        self.wire = Wire(codec)
        self.source = ToneSource(TONES[name], 6000)
        self.sender = RtpSender(payload_type=CODECS[codec].payload_type)
        self.key = self.member.call_key
        self.joined = unpack(pack(self.member))  # as a worker receives it
        self.joined.send = self.wire.send
        engine.add(self.joined, room)

    def speak(self, now: float) -> None:
        frame = self.joined.codec.encode(self.source.next_frame(160))
        self.joined.receive_rtp(self.sender.packet(frame), self.joined.remote, now)

    def heard(self, since_frame: int = 10) -> dict[float, float]:
        return tone_levels(np.concatenate(self.wire.frames[since_frame:]), list(TONES.values()))


def run(engine: MediaEngine, calls: list[Call], ticks: int, start: int = 0) -> list:
    reports = []
    for tick in range(start, start + ticks):
        for call in calls:
            call.speak(tick * 0.02)
        engine.tick(tick * 0.02 + 0.0001, tick * 0.02)
        reports.extend(engine.take_reports())
    return reports


def test_handoff_keeps_the_stream_going() -> None:
    member = participant("a", "PCMA")
    member.muted, member.volume_db, member.counters.packets_in = True, -3, 42
    member.prompts.play("beep")
    member.sender.packet(b"\xd5" * 160)  # one packet sent before the handoff
    copy = unpack(pack(member))
    assert copy.codec is CODECS["PCMA"]  # by name: the shared tables, not a pickled copy
    assert (copy.sender.ssrc, copy.sender.sequence, copy.sender.timestamp) == (
        member.sender.ssrc, member.sender.sequence, member.sender.timestamp,
    )
    assert copy.muted and copy.volume_db == -3 and copy.counters.packets_in == 42
    assert copy.prompts.busy and copy.inband is None


def test_each_hears_the_others_and_mute_and_mixing_travel() -> None:
    engine = MediaEngine()
    calls = [Call(engine, name) for name in ("a", "b", "c")]
    run(engine, calls, 60)
    for call in calls:
        heard = call.heard()
        for name, tone in TONES.items():
            expected = HEARD_DB if name != call.member.id else None
            if expected is None:
                assert heard[tone] < ABSENT_DB, (call.member.id, heard)
            else:
                assert heard[tone] > HEARD_DB, (call.member.id, heard)

    engine.apply(UpdateControls(calls[1].key, Controls(muted=True)))
    for call in calls:
        call.wire.frames.clear()
    run(engine, calls, 60, start=60)
    assert calls[0].heard()[TONES["b"]] < ABSENT_DB
    assert calls[0].heard()[TONES["c"]] > HEARD_DB

    engine.apply(SetRoomMixing("r", False))  # a conference waiting for its leader: no one hears
    for call in calls:
        call.wire.frames.clear()
    run(engine, calls, 30, start=120)
    assert all(level < ABSENT_DB for level in calls[2].heard(5).values())


def test_prompt_commands_are_acknowledged_with_their_sequence() -> None:
    engine = MediaEngine()
    (call,) = [Call(engine, "a")]
    engine.apply(PlayPrompt(call.key, "beep", False, 1))
    reports = run(engine, [call], 5)
    assert not [r for r in reports if isinstance(r, PromptsIdle)]  # still playing
    reports = run(engine, [call], 200, start=5)
    assert [r for r in reports if isinstance(r, PromptsIdle)] == [PromptsIdle(call.key, 1)]

    engine.apply(PlayPrompt(call.key, "goodbye", True, 2))
    engine.apply(ClearPrompts(call.key, 3))  # a key press stops it: idle at once
    reports = run(engine, [call], 1, start=205)
    assert [r for r in reports if isinstance(r, PromptsIdle)] == [PromptsIdle(call.key, 3)]


def test_digits_talking_and_stats_are_reported() -> None:
    engine = MediaEngine()
    talker, listener = Call(engine, "a"), Call(engine, "b")
    talker.joined.telephone_event_pt = 101
    reports = run(engine, [talker, listener], 50)
    assert TalkingChanged(talker.key, True) in reports
    assert engine.lateness.ticks == 50 and engine.lateness.counts[0] == 50
    talker_stats, listener_stats = engine.stats(talker.key), engine.stats(listener.key)
    assert talker_stats is not None and listener_stats is not None
    assert talker_stats.counters.packets_in == 50
    assert listener_stats.counters.packets_out == 50
    assert talker.joined.last_rtp == pytest.approx(49 * 0.02)
    assert engine.stats("nobody") is None

    start, end = bytes([5, 10, 0, 160]), bytes([5, 0x80 | 10, 1, 64])  # key 5: start, end
    for sequence, (event, marker) in enumerate(((start, True), (end, False)), start=9000):
        packet = build_rtp(101, sequence, 123456, talker.sender.ssrc, event, marker=marker)
        talker.joined.receive_rtp(packet, talker.joined.remote, 1.0)
    engine.tick(1.0, 1.0)
    assert DigitPressed(talker.key, "5", "rfc4733") in engine.take_reports()


def test_removal_keeps_final_counters_and_closes_an_empty_room() -> None:
    engine = MediaEngine()
    calls = [Call(engine, "a"), Call(engine, "b")]
    run(engine, calls, 10)
    assert engine.apply(RemoveParticipant(calls[0].key)) is calls[0].joined
    assert engine.apply(RemoveParticipant(calls[0].key)) is None  # twice: no harm
    assert engine.apply(PlayPrompt(calls[0].key, "beep", False, 1)) is None  # gone: ignored
    engine.apply(RemoveParticipant(calls[1].key))
    assert engine.rooms == {} and engine.members == {}
    assert (engine.ended.packets_in, engine.ended.packets_out) == (20, 20)


def test_messages_round_trip() -> None:
    commands = [SetRoomMixing("r", True), PlayPrompt("k", "beep", False, 7)]
    assert decode(encode(commands)) == commands


def test_lateness_histogram_buckets_and_sums() -> None:
    histogram = LatenessHistogram()
    for late in (0.0001, 0.0005, 0.003, 0.2, -0.001):
        histogram.observe(late)
    assert histogram.ticks == 5
    assert histogram.counts[0] == 3  # early and exactly on a bound count in the lower bucket
    assert histogram.counts[LATENESS_BUCKETS.index(0.005)] == 1
    assert histogram.counts[-1] == 1  # over 100 ms
    other = LatenessHistogram()
    other.observe(0.003)
    histogram.add(other)
    assert histogram.ticks == 6 and histogram.total_s == pytest.approx(0.2056)


def test_loss_counts_the_whole_stream_so_key_presses_are_not_lost_audio() -> None:
    """Telephone-event packets take sequence numbers between the audio ones: no loss."""
    engine = MediaEngine()
    talker, listener = Call(engine, "a"), Call(engine, "b")
    talker.joined.telephone_event_pt = 101
    run(engine, [talker, listener], 20)
    sender = talker.sender
    for digit_packet in range(7):  # one key: seven event packets of the same stream
        event = bytes([5, 0x80 if digit_packet == 6 else 0, 0, 160])
        packet = sender.packet(event, samples=0, payload_type=101)
        talker.joined.receive_rtp(packet, talker.joined.remote, 0.4)
    run(engine, [talker, listener], 20, start=21)
    stats = engine.stats(talker.key)
    assert stats is not None and stats.lost == 0
    assert stats.counters.packets_in == 47

    sender.packet(b"\xff" * 160)  # one audio packet never reaches the bridge
    sender.packet(b"\xff" * 160)
    run(engine, [talker, listener], 5, start=41)
    stats = engine.stats(talker.key)
    assert stats is not None and stats.lost == 2
    engine.apply(RemoveParticipant(talker.key))
    assert engine.ended.lost == 2


def test_a_gap_is_counted_concealed_and_a_burst_trimmed_up_to_metrics_totals() -> None:
    """What a leg's jitter buffer did to its audio reaches the API and /metrics' totals: ticks
    it had no frame for (a talker silent for 3 ticks) and frames it dropped to bound the delay
    (the 3 late frames and 3 more arriving at once), kept once the leg has left."""
    from bridge.mixing.local import totals_of

    engine = MediaEngine()
    talker, listener = Call(engine, "a"), Call(engine, "b")
    run(engine, [talker, listener], 20)
    run(engine, [listener], 3, start=20)  # the talker's packets are held up...
    for _ in range(6):  # ...and come at once, with the next 3
        talker.speak(23 * 0.02)
    run(engine, [talker, listener], 20, start=23)
    stats = engine.stats(talker.key)
    assert stats is not None and stats.concealed >= 2 and stats.trimmed >= 3, stats
    assert stats.lost == 0  # no sequence number went missing: nothing was lost on the way
    quiet = engine.stats(listener.key)
    assert quiet is not None and (quiet.concealed, quiet.trimmed) == (0, 0)
    totals = totals_of(engine, engine.lateness)
    assert (totals.frames_concealed, totals.frames_trimmed) == (stats.concealed, stats.trimmed)
    engine.apply(RemoveParticipant(talker.key))
    assert (engine.ended.concealed, engine.ended.trimmed) == (stats.concealed, stats.trimmed)
    totals = totals_of(engine, engine.lateness)
    assert (totals.frames_concealed, totals.frames_trimmed) == (stats.concealed, stats.trimmed)


def test_ticks_the_clock_skipped_move_every_streams_timestamp_on() -> None:
    """After a stall past the clock's backlog the skipped ticks send nothing, and each stream's
    timestamp jumps the time they covered: a receiver reads the next packets on time, not
    340 ms late for the rest of the call."""
    engine = MediaEngine()
    calls = [Call(engine, name) for name in ("a", "b")]
    sent: list[tuple[int, int]] = []  # (tick, timestamp) of what "a" is sent
    tick = 0

    def record(data: bytes, address: tuple[str, int]) -> None:
        sent.append((tick, parse_rtp(data).timestamp))

    calls[0].joined.send = record
    for tick in [*range(10), *range(27, 35)]:  # ticks 10-26 skipped: the clock's jump
        for call in calls:
            call.speak(tick * 0.02)
        engine.tick(tick * 0.02 + 0.0001, tick * 0.02)
    assert {t for t, _ in sent} >= {8, 9, 27, 28}
    assert len({(stamp - 160 * t) & 0xFFFF_FFFF for t, stamp in sent}) == 1, sent
