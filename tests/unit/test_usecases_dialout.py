"""Dial-out sequencing against the in-memory bridge: one frozen request per call, the next
number only once the previous one settled, the plane's own record completed from the bridge's
events by reference (not by owner or tag), and a queued call that cannot be placed finished
here without an event on the bridge's bus."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

from bridge.events import BridgeEvent, DialOutEnded, DialOutSettled
from control.callout import CallOut, ended_payload, notification
from control.dialout import DialOuts
from tests.unit.test_usecases import FakeBridge, config


def ended(ref: str, room: str, status: str, **times: Any) -> DialOutEnded:
    """The bridge's event, whichever fields it still carries (owner and tag are going)."""
    values: dict[str, Any] = {
        "time": 30.0, "room": room, "participant": "", "ref": ref, "dest": "sip:a@127.0.0.1",
        "caller_id": "now", "status": status, "sip_status": 200, "reason": "", "tag": "",
        "owner": None, "started_at": 10.0, "answered_at": 12.0, "ended_at": 30.0, **times,
    }  # fmt: skip
    names = {f.name for f in dataclasses.fields(DialOutEnded)}
    return DialOutEnded(**{k: v for k, v in values.items() if k in names})


async def until(condition: Callable[[], bool]) -> None:
    """Let the sequencing task run (it resolves the host in a thread) until `condition`."""
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_numbers_are_dialled_one_after_another() -> None:
    bridge, finished = FakeBridge(), []
    dialouts = DialOuts(
        bridge,
        config(),
        is_open=lambda room: True,
        finished=finished.append,
        wall_clock=lambda: 10.0,
    )
    try:
        first, second = await dialouts.start_request(
            "t1", "now", ["sip:a@127.0.0.1", "sip:b@127.0.0.1"], caller_id="now",
            private=False, confirm=False, tag="batch", notify_url="http://example.org/n",
        )  # fmt: skip
        await until(lambda: len(bridge.dialled) == 1)
        await asyncio.sleep(0.05)
        assert [r.ref for r in bridge.dialled] == [first.ref]  # the second waits
        request = bridge.dialled[0]
        assert request.dest == "sip:a@127.0.0.1" and request.room == "now"
        assert first.started_at == 10.0 and second.started_at == 0.0
        dialouts.on_event(DialOutSettled(11.0, "now", "p1", first.ref, "answered", 200, "", 11.0))
        assert first.status == "answered" and first.answered_at == 11.0
        await until(lambda: len(bridge.dialled) == 2)
        assert [r.ref for r in bridge.dialled] == [first.ref, second.ref]
        assert dialouts.active_count("t1") == 2
        dialouts.on_event(ended(first.ref, "now", "answered"))
        assert finished == [first] and first.ended_at == 30.0 and first.tag == "batch"
        assert dialouts.active_count("t1") == 1
        note = notification(first, "SGD")
        assert note["tag"] == "batch" and note["duration"] == 1
        assert note["call_status"] == "answered"
    finally:
        await dialouts.stop()


async def test_a_call_to_an_ended_room_is_failed_here() -> None:
    bridge, finished = FakeBridge(), []
    seen: list[BridgeEvent] = []
    bridge.events.subscribe(seen.append)
    dialouts = DialOuts(
        bridge,
        config(),
        is_open=lambda room: False,
        finished=finished.append,
        wall_clock=lambda: 50.0,
    )
    try:
        (call,) = await dialouts.start_request(
            "t1", "gone", ["sip:a@127.0.0.1"], caller_id="gone", private=True, confirm=False,
            tag="x", notify_url=None,
        )  # fmt: skip
        await until(lambda: bool(finished))
        assert finished == [call] and bridge.dialled == [] and seen == []
        assert call.status == "failed" and call.reason == "conference ended"
        assert call.caller_id == "anonymous" and call.started_at == call.ended_at == 50.0
        assert dialouts.active_count("t1") == 0
        payload = ended_payload(call, None)
        assert payload["tag"] == "x" and payload["status"] == "failed"
        assert payload["direction"] == "out" and payload["conference_id"] is None
    finally:
        await dialouts.stop()


def test_an_unknown_reference_is_ignored() -> None:
    finished: list[CallOut] = []
    dialouts = DialOuts(FakeBridge(), config(), is_open=lambda room: True, finished=finished.append)
    dialouts.on_event(ended("nope", "now", "failed"))
    assert finished == []
