"""Bridge events as the control plane publishes them: a type name and a JSON payload per event,
fanned out to webhooks (through the persistent outbox) and to live Server-Sent Events streams.

The bus callback runs on the SIP or media path, so it only stamps the event with its tenant and
queues it; a task does the database writes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bridge.events import (
    BridgeEvent,
    CallAlerting,
    CallFinished,
    CodeLockout,
    DialOutSettled,
    DtmfReceived,
    ParticipantChanged,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantMuted,
    ParticipantTalking,
    RecordingStarted,
    RecordingStopped,
)

EVENT_TYPES = (
    "call.alerting",
    "participant.joined",
    "participant.left",
    "participant.muted",
    "participant.unmuted",
    "participant.talking_started",
    "participant.talking_stopped",
    "participant.updated",
    "dtmf",
    "conference.state_changed",
    "call.outcome",
    "call.ended",
    "recording.started",
    "recording.stopped",
    "security.code_lockout",
    "voicemail.new",
    "voicemail.deleted",
)


def iso(moment: float | datetime | None) -> str | None:
    if moment is None:
        return None
    if isinstance(moment, float | int):
        moment = datetime.fromtimestamp(moment, UTC)
    return moment.isoformat().replace("+00:00", "Z")


def describe(event: BridgeEvent) -> tuple[str, dict[str, Any]] | None:
    """The published type and payload of a bridge event; None for events not published. The end
    of a call out is published from the plane's own record (`control.callout.ended_payload`):
    who asked and its tag are the plane's, not the bridge's."""
    base: dict[str, Any] = {"conference": event.room, "time": iso(event.time)}
    if event.participant:
        base["participant_id"] = event.participant
    match event:
        case ParticipantJoined(caller=caller):
            return "participant.joined", {**base, "caller": caller}
        case ParticipantLeft(reason=reason):
            return "participant.left", {**base, "reason": reason}
        case ParticipantMuted(muted=muted, by=by):
            return ("participant.muted" if muted else "participant.unmuted"), {**base, "by": by}
        case ParticipantTalking(talking=talking):
            kind = "started" if talking else "stopped"
            return f"participant.talking_{kind}", base
        case ParticipantChanged(option=option, value=value):
            return "participant.updated", {**base, "option": option, "value": value}
        case RecordingStarted(path=path, format=fmt):
            return "recording.started", {**base, "path": path, "format": fmt}
        case RecordingStopped(path=path, duration_s=duration, size_bytes=size, reason=reason):
            return "recording.stopped", {
                **base,
                "path": path,
                "duration_s": duration,
                "size_bytes": size,
                "reason": reason,
            }
        case DtmfReceived(digit=digit, method=method):
            return "dtmf", {**base, "digit": digit, "method": method}
        case CodeLockout(scope=scope, source=source, attempts=attempts, until=until):
            return "security.code_lockout", {
                **base,
                "scope": scope,
                "source": source,
                "attempts": attempts,
                "until": iso(until),
            }
        case CallAlerting(call_id=call_id, caller=caller, manual=manual):
            return "call.alerting", {
                **base,
                "call_id": call_id,
                "caller": caller,
                "manual_answer": manual,
            }
        case DialOutSettled(ref=ref, status=status):
            return "call.outcome", {**base, "txn_ref": ref, "status": status}
        case CallFinished():
            return "call.ended", {
                **base,
                "direction": "in",
                "call_id": event.call_id,
                "caller": event.caller,
                "started_at": iso(event.started_at),
                "answered_at": iso(event.answered_at),
                "status": event.status,
                "reason": event.reason,
            }
    return None


@dataclass(frozen=True)
class Published:
    """One event on its way out, already tied to its tenant (None: a room no tenant owns)."""

    tenant_id: str | None
    type: str
    payload: dict[str, Any]
    source: object = None  # the bridge event, or the plane's own record (a call out)


@dataclass(eq=False)
class Watcher:
    """One live SSE stream: its tenant, the types it asked for, and a bounded queue (a slow
    reader loses its oldest events rather than growing the bridge's memory)."""

    tenant_id: str | None  # None: the admin, who sees every tenant's events
    types: frozenset[str]
    queue: asyncio.Queue[Published] = field(default_factory=lambda: asyncio.Queue(1000))
    dropped: int = 0

    def wants(self, event: Published) -> bool:
        if self.tenant_id is not None and event.tenant_id != self.tenant_id:
            return False
        return not self.types or event.type in self.types

    def offer(self, event: Published) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(event)


class Broker:
    """Live fan-out to SSE watchers."""

    def __init__(self) -> None:
        self.watchers: set[Watcher] = set()

    def watch(self, tenant_id: str | None, types: frozenset[str]) -> Watcher:
        watcher = Watcher(tenant_id, types)
        self.watchers.add(watcher)
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        self.watchers.discard(watcher)

    def publish(self, event: Published) -> None:
        for watcher in self.watchers:
            if watcher.wants(event):
                watcher.offer(event)
