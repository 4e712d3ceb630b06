"""Caller lists: the numbers let into `caller` and `room+caller` conferences (and, for other
modes, kept for later). Changes go to the database, then to the bridge's room rules."""

from __future__ import annotations

from control.plane import ControlPlane
from control.store.records import Conference
from control.usecases.errors import NotFound


def listed(conference: Conference) -> list[str]:
    return list(conference.callers)


async def add(plane: ControlPlane, conference: Conference, number: str) -> Conference:
    """Allow `number` in; adding a number twice is harmless."""
    await plane.store.conferences.add_caller(conference.id, number)
    return await plane.refresh(conference)


async def remove(plane: ControlPlane, conference: Conference, number: str) -> Conference:
    if number not in conference.callers:
        raise NotFound(f"caller {number!r}")
    await plane.store.conferences.remove_caller(conference.id, number)
    return await plane.refresh(conference)
