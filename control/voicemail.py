"""Voice mail of an application's line (Teaming's voice messages): a caller who cannot get in
is answered into a room of its own, hears "please leave your message after the tone", a beep,
and is recorded until `#`, hang-up or MAX_MESSAGE_S; the file becomes a voice message.

The line of a Teaming user (an application) is every one of its conferences; a call to one
while `doNotDisturb` is active goes to voice mail (`control.plane.ControlPlane.gate`). The
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
from control.store import Store

log = structlog.get_logger(__name__)

ROOM_PREFIX = "vm."
MAX_MESSAGE_S = 120.0
PROMPT = "leave_message"
BEEP = "beep"


def prompt_seconds(name: str) -> float:
    with wave.open(str(PROMPT_DIR / f"{name}.wav"), "rb") as wav:
        return wav.getnframes() / wav.getframerate()


@dataclass(eq=False)
class Pending:
    """A caller on the way to leaving a message."""

    tenant_id: str
    caller: str
    started_at: float = 0.0
    participant: str = ""
    path: str = ""
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class VoiceMail:
    def __init__(
        self,
        bridge: ConferenceControl,
        store: Store,
        directory: Path,
        clock: Callable[[], datetime],
    ) -> None:
        self.bridge = bridge
        self.store = store
        self.directory = directory
        self.clock = clock
        self.pending: dict[str, Pending] = {}  # by room
        self._saving: set[asyncio.Task[None]] = set()

    def room_for(self, tenant_id: str, caller: str) -> str:
        """A fresh voice-mail room for one caller of the application."""
        room = f"{ROOM_PREFIX}{secrets.token_hex(8)}"
        self.pending[room] = Pending(tenant_id, caller)
        return room

    def on_event(self, event: BridgeEvent) -> None:
        """Runs on the SIP/media path: only voice-mail rooms concern us."""
        pending = self.pending.get(event.room)
        if pending is None:
            return
        if isinstance(event, ParticipantJoined):
            pending.participant = event.participant
            self.bridge.set_option(event.room, event.participant, "dtmf_enabled", False)
            pending.task = asyncio.get_running_loop().create_task(self._greet(event.room))
        elif isinstance(event, DtmfReceived) and event.digit == "#":
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

    async def stop(self) -> None:
        for pending in self.pending.values():
            if pending.task is not None:
                pending.task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._saving)
