"""An application's voice messages: list, read one with its audio, delete, mark read."""

from __future__ import annotations

from pathlib import Path

from control.plane import ControlPlane
from control.store.records import Tenant, VoiceMessage
from control.usecases.errors import NotFound


async def listing(
    plane: ControlPlane, tenant: Tenant, offset: int, limit: int
) -> tuple[list[VoiceMessage], int]:
    return await plane.store.voicemail.list_messages(tenant.id, offset, limit)


async def find(plane: ControlPlane, tenant: Tenant, message_id: str) -> VoiceMessage:
    message = await plane.store.voicemail.get_message(tenant.id, message_id)
    if message is None:
        raise NotFound(f"voice message {message_id!r}")
    return message


async def audio(plane: ControlPlane, tenant: Tenant, message_id: str) -> tuple[VoiceMessage, bytes]:
    """The message and its WAV file's bytes."""
    message = await find(plane, tenant, message_id)
    try:
        return message, Path(message.path).read_bytes()
    except OSError:
        raise NotFound(f"voice message {message_id!r}: its audio file is gone") from None


async def delete(plane: ControlPlane, tenant: Tenant, message_id: str) -> None:
    message = await find(plane, tenant, message_id)
    await plane.store.voicemail.delete_message(tenant.id, message_id)
    Path(message.path).unlink(missing_ok=True)
    plane.voicemail.deleted(message)


async def mark(plane: ControlPlane, tenant: Tenant, message_id: str | None, read: bool) -> None:
    """Mark one message, or every message when `message_id` is None, read or unread."""
    if message_id is not None:
        await find(plane, tenant, message_id)
    await plane.store.voicemail.mark_read(tenant.id, message_id, read)
