"""Talking detection: hysteresis so a pause between words is not a stop, and a click is not a
start."""

from __future__ import annotations

from bridge.mixing.voice import VoiceActivity


def feed(voice: VoiceActivity, frames: str) -> list[int]:
    """Frames as a string of 1 (loud) and 0 (quiet); returns the indices where talking changed."""
    return [i for i, f in enumerate(frames) if voice.update(f == "1")]


def test_starts_after_60_ms_and_stops_after_500_ms_of_quiet() -> None:
    voice = VoiceActivity()
    assert feed(voice, "11") == [] and not voice.talking
    assert feed(voice, "1") == [0] and voice.talking
    assert feed(voice, "0" * 24) == [] and voice.talking  # a 480 ms pause between words
    assert feed(voice, "1" + "0" * 25) == [25] and not voice.talking


def test_clicks_never_start_talking() -> None:
    voice = VoiceActivity()
    assert feed(voice, "1101101100" * 10) == []
    assert not voice.talking
