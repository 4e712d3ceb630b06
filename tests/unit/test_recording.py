"""A room's recording (bridge/mixing/recording.py and its writer thread): the mix written by
PyAV off the tick, ended by StopRecording, by the room closing or by a disk error, each
reported once with the file's duration and size."""

from __future__ import annotations

import time
from pathlib import Path

import av
import numpy as np
import pytest

from bridge.media.codecs import codec_for
from bridge.media.tones import tone_levels
from bridge.mixing.backend import RecordingEnded, RemoveParticipant, StartRecording, StopRecording
from bridge.mixing.engine import MediaEngine
from tests.unit.test_multirate_room import Phone, run

TONES = {"a": 500.0, "b": 1100.0, "c": 1700.0}


def ended(engine: MediaEngine, start: int, phones: list[Phone]) -> RecordingEnded:
    """Tick on until the writer thread has finished the file and the engine reported it."""
    for tick in range(start, start + 500):
        for report in run(engine, phones, 1, start=tick):
            if isinstance(report, RecordingEnded):
                return report
        time.sleep(0.005)
    raise AssertionError("no RecordingEnded")


def read(path: Path) -> tuple[np.ndarray, int]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        frames = [f.to_ndarray().reshape(-1) for f in container.decode(stream)]
        samples = np.concatenate(frames)
        if samples.dtype.kind == "f":  # Opus decodes to float
            samples = np.rint(samples * 32767)
        return samples.astype(np.int16), stream.rate


@pytest.mark.parametrize("fmt", ["wav", "ogg"])
def test_a_three_tone_room_is_recorded_with_every_tone_and_the_right_duration(
    tmp_path: Path, fmt: str
) -> None:
    engine = MediaEngine()
    phones = [Phone(engine, name, codec_for("PCMU"), [hz]) for name, hz in TONES.items()]
    run(engine, phones, 5)
    path = tmp_path / f"r.{fmt}"
    engine.apply(StartRecording("r", str(path), fmt))
    run(engine, phones, 100, start=5)  # 2 s
    engine.apply(StopRecording("r"))
    report = ended(engine, 105, phones)
    assert report.room == "r" and report.path == str(path) and report.reason == "stopped"
    assert report.duration_s == pytest.approx(2.0, abs=0.05)
    assert report.size_bytes == path.stat().st_size > 0
    samples, rate = read(path)
    assert rate == 48000 and len(samples) / rate == pytest.approx(2.0, abs=0.1)
    heard = tone_levels(samples[rate // 2 :], list(TONES.values()), rate)
    assert all(level > -35 for level in heard.values()), heard


def test_the_room_closing_ends_the_recording(tmp_path: Path) -> None:
    engine = MediaEngine()
    phones = [Phone(engine, name, codec_for("G722"), [hz]) for name, hz in TONES.items()]
    engine.apply(StartRecording("r", str(tmp_path / "r.wav"), "wav"))
    run(engine, phones, 50)
    for phone in phones:
        engine.apply(RemoveParticipant(phone.member.call_key))
    report = ended(engine, 50, [])
    assert report.reason == "room_closed" and report.duration_s == pytest.approx(1.0)
    assert read(tmp_path / "r.wav")[0].size == 48000


def test_an_unwritable_place_ends_it_with_the_error_and_the_room_carries_on(tmp_path: Path):
    engine = MediaEngine()
    phones = [Phone(engine, name, codec_for("PCMU"), [hz]) for name, hz in TONES.items()]
    run(engine, phones, 5)
    (tmp_path / "a-file").write_text("not a directory")
    engine.apply(StartRecording("r", str(tmp_path / "a-file" / "r.wav"), "wav"))
    report = ended(engine, 5, phones)
    assert report.reason.startswith("error: ") and "a-file" in report.reason
    run(engine, phones, 30, start=200)
    assert phones[0].levels([1100.0], since=len(phones[0].heard) - 25)[1100.0] > -35


def test_recording_a_room_not_mixed_here_is_reported_at_once() -> None:
    engine = MediaEngine()
    engine.apply(StartRecording("nowhere", "/tmp/x.wav", "wav"))
    assert engine.take_reports() == [RecordingEnded("nowhere", "/tmp/x.wav", 0.0, 0,
                                                    "not_mixed_here")]
