"""Voice mail of an application's line (Teaming's voice messages): a caller who cannot get in
is answered into a room of its own, hears "please leave your message after the tone", a beep,
and is recorded until `#`, hang-up or MAX_MESSAGE_S; the file becomes a voice message.

The line of a Teaming user (an application) is every one of its conferences; a call to one
while `doNotDisturb` is active goes to voice mail, and so does, with `voiceMessaging` active, a
call to a locked or full one or one left ringing unanswered (`control.forwarding`,
`control.plane.ControlPlane.gate`).

The gate sends the call to a room named `vm.<application id>.<random>` and keeps nothing: a
call that never gets there (cancelled while ringing, answered by the operator first, failed)
leaves nothing behind. A caller becomes a pending message only once in the room, and stops
being one when the recording stops or the caller leaves before the tone. The gate refuses calls
dialled to such a name (`is_voice_mail_room`). A saved message publishes `voicemail.new`, a
deleted one `voicemail.deleted` (Teaming's "Voice Messaging" subscriptions). The
recording is the bridge's room recording (`ControlPort.start_recording`) of a room where the
caller is alone, so it holds exactly that caller: a WAV file at the recorder's rate, under
`<recording.dir>/voicemail/`. Keys do nothing else there (dtmf_enabled false: 1 does not mute).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from bridge.control_port import ConferenceControl
from bridge.events import (
    BridgeEvent,
    DtmfReceived,
    ParticipantJoined,
    ParticipantLeft,
    RecordingStopped,
)
from bridge.media.prompt import PROMPT_DIR
from control.events import iso
from control.store import Store
from control.store.records import VoiceMessage

log = structlog.get_logger(__name__)

ROOM_PREFIX = "vm."
MAX_MESSAGE_S = 120.0
PROMPT = "leave_message"
BEEP = "beep"


def prompt_seconds(name: str) -> float:
    with wave.open(str(PROMPT_DIR / f"{name}.wav"), "rb") as wav:
        return wav.getnframes() / wav.getframerate()


def message_event(message: VoiceMessage) -> dict[str, Any]:
    """The payload of `voicemail.new` and `voicemail.deleted`: the message without its audio."""
    return {
        "message_id": message.id,
        "caller": message.caller,
        "duration_ms": message.duration_ms,
        "created_at": iso(message.created_at),
    }


def is_voice_mail_room(room: str) -> bool:
    return room.startswith(ROOM_PREFIX)


def tenant_of(room: str) -> str | None:
    """The application whose voice mail `room` is, or None for another room."""
    if not is_voice_mail_room(room):
        return None
    return room[len(ROOM_PREFIX) :].rpartition(".")[0] or None


@dataclass(eq=False)
class Pending:
    """A caller in a voice-mail room, on the way to leaving a message."""

    tenant_id: str
    caller: str
    participant: str
    started_at: float = 0.0
    path: str = ""
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class VoiceMail:
    def __init__(
        self,
        bridge: ConferenceControl,
        store: Store,
        directory: Path,
        clock: Callable[[], datetime],
        publish: Callable[[str, str, dict[str, Any]], None],
    ) -> None:
        self.bridge = bridge
        self.store = store
        self.directory = directory
        self.clock = clock
        self.publish = publish  # (application id, event type, payload): to its subscribers
        self.pending: dict[str, Pending] = {}  # by room: callers in voice-mail rooms
        self._saving: set[asyncio.Task[None]] = set()

    @staticmethod
    def room_for(tenant_id: str) -> str:
        """A fresh voice-mail room for one caller of the application (nothing is kept)."""
        return f"{ROOM_PREFIX}{tenant_id}.{secrets.token_hex(6)}"

    def on_event(self, event: BridgeEvent) -> None:
        """Runs on the SIP/media path: only voice-mail rooms concern us."""
        if isinstance(event, ParticipantJoined):
            tenant_id = tenant_of(event.room)
            if tenant_id is not None and event.room not in self.pending:
                self._arrived(event, tenant_id)
            return
        pending = self.pending.get(event.room)
        if pending is None:
            return
        if isinstance(event, DtmfReceived) and event.digit == "#":
            self.bridge.eject(event.room, event.participant, reason="message left")
        elif isinstance(event, RecordingStopped):
            del self.pending[event.room]
            task = asyncio.get_running_loop().create_task(self._save(pending, event))
            self._saving.add(task)
            task.add_done_callback(self._saving.discard)
        elif isinstance(event, ParticipantLeft) and not pending.path:
            del self.pending[event.room]  # hung up before the tone: no message
            if pending.task is not None:
                pending.task.cancel()

    def _arrived(self, event: ParticipantJoined, tenant_id: str) -> None:
        pending = Pending(tenant_id, event.caller, event.participant)
        self.pending[event.room] = pending
        self.bridge.set_option(event.room, event.participant, "dtmf_enabled", False)
        pending.task = asyncio.get_running_loop().create_task(self._greet(event.room))

    async def _greet(self, room: str) -> None:
        """The prompt, the beep, then record until `#`, hang-up or the maximum length."""
        pending = self.pending[room]
        self.bridge.play_to_room(room, PROMPT)
        await asyncio.sleep(prompt_seconds(PROMPT))
        self.bridge.play_to_room(room, BEEP)
        await asyncio.sleep(prompt_seconds(BEEP))
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{room}.wav"
        pending.path = str(path)
        pending.started_at = self.clock().timestamp()
        if not self.bridge.start_recording(room, str(path), "wav"):
            log.info("voicemail.gone", room=room)  # hung up just now
            self.pending.pop(room, None)
            return
        log.info("voicemail.recording", room=room, caller=pending.caller)
        await asyncio.sleep(MAX_MESSAGE_S)
        self.bridge.eject(room, pending.participant, reason="message too long")

    async def _save(self, pending: Pending, stopped: RecordingStopped) -> None:
        if pending.task is not None:
            pending.task.cancel()
        if stopped.duration_s <= 0 or not Path(stopped.path).is_file():
            return
        message = await self.store.voicemail.add_message(
            pending.tenant_id,
            caller=pending.caller,
            caller_name="Unavailable",
            created_at=self.clock(),
            duration_ms=round(stopped.duration_s * 1000),
            path=stopped.path,
        )
        log.info("voicemail.saved", message=message.id, tenant=pending.tenant_id)
        self.publish(pending.tenant_id, "voicemail.new", message_event(message))

    def deleted(self, message: VoiceMessage) -> None:
        self.publish(message.tenant_id, "voicemail.deleted", message_event(message))

    async def stop(self) -> None:
        for pending in self.pending.values():
            if pending.task is not None:
                pending.task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._saving)
