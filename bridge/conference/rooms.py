"""Rooms as call policy sees them: who is in (leg keys, in join order), how many fit, whether
they mix, and the managed rooms' rules. No media here: that is below the seam."""

from __future__ import annotations

from dataclasses import dataclass, field

from bridge.config import Config, RoomDefinition


@dataclass
class RoomState:
    name: str
    max_participants: int
    mixing: bool = True
    members: list[str] = field(default_factory=list)

    @property
    def full(self) -> bool:
        return len(self.members) >= self.max_participants


class Rooms:
    """Rooms listed in the configuration and managed ones (`define`) live on when empty;
    rooms made by a caller go when their last member leaves."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.definitions: dict[str, RoomDefinition] = {r.name: r for r in config.room}
        self.by_name: dict[str, RoomState] = {}
        for name in (*config.rooms.names, *self.definitions):
            self.by_name[name] = self._new(name)

    def __contains__(self, name: str) -> bool:
        return name in self.by_name

    def get(self, name: str) -> RoomState | None:
        return self.by_name.get(name)

    def values(self) -> list[RoomState]:
        return list(self.by_name.values())

    def full(self, name: str) -> bool:
        room = self.by_name.get(name)
        return room is not None and room.full

    def open(self, name: str) -> tuple[RoomState, bool]:
        """The room, made now if needed; True when it was."""
        room = self.by_name.get(name)
        if room is not None:
            return room, False
        room = self.by_name[name] = self._new(name)
        return room, True

    def _new(self, name: str) -> RoomState:
        definition = self.definitions.get(name)
        limit = (definition.max_participants if definition else 0) or (
            self.config.rooms.max_participants
        )
        return RoomState(name, limit)

    def define(self, definition: RoomDefinition) -> None:
        """Create or update a managed room: its access rules and participant limit."""
        self.definitions[definition.name] = definition
        room, _ = self.open(definition.name)
        room.max_participants = definition.max_participants or self.config.rooms.max_participants

    def forget(self, name: str) -> None:
        """Drop a managed room's rules; the room goes too once empty."""
        self.definitions.pop(name, None)
        self.close_if_done(name)

    def close_if_done(self, name: str) -> bool:
        """Remove an empty room nobody keeps; True when it was removed."""
        room = self.by_name.get(name)
        if (
            room is None
            or room.members
            or name in self.config.rooms.names
            or name in self.definitions
        ):
            return False
        del self.by_name[name]
        return True
