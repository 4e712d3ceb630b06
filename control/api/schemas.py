"""Request and response bodies of the native API. Unknown fields are errors (`extra=forbid`),
so a typo in a script fails loudly instead of being ignored."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator

from bridge.config import ACCESS_MODES

RoomId = Annotated[str, Field(pattern=r"^[A-Za-z0-9._]{1,32}$")]
Code = Annotated[str, Field(pattern=r"^[0-9]{4,12}$")]
CallerNumber = Annotated[str, Field(pattern=r"^[+]?[A-Za-z0-9._-]{1,64}$")]
DivertTarget = Annotated[str, Field(pattern=r"^(sips?:\S{1,200}|[A-Za-z0-9._-]{1,32})$")]
Access = Literal[ACCESS_MODES]  # type: ignore[valid-type]  # the one list, in bridge.config


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConferenceCreate(Strict):
    name: RoomId | None = None
    access: Access = "none"
    code: Code | None = None
    start_time: datetime | None = None
    duration_minutes: int | None = Field(default=None, ge=1, le=24 * 60)
    max_participants: int | None = Field(default=None, ge=2, le=1000)
    divert_to: DivertTarget | None = None
    leader: CallerNumber | None = None
    callers: list[CallerNumber] = Field(default_factory=list, max_length=1000)
    locked: bool = False
    manual_answer: bool = False  # calls ring until answered through the API (Teaming ANSWER)
    end_on_leader_exit: bool = False  # the conference ends when the leader leaves


class AnnouncementPlay(Strict):
    announcement: str | None = None  # an uploaded one's name...
    prompt: str | None = None  # ...or a packaged prompt's
    participant_id: str | None = None  # only this participant hears it; default: the room


class RecordingStart(Strict):
    format: Literal["wav", "ogg"] | None = None  # default: the config's [recording] format


class ConferenceUpdate(Strict):
    access: Access | None = None
    code: Code | None = None
    start_time: datetime | None = None
    duration_minutes: int | None = Field(default=None, ge=1, le=24 * 60)
    extend_minutes: int | None = Field(default=None, ge=1, le=24 * 60)
    max_participants: int | None = Field(default=None, ge=2, le=1000)
    divert_to: DivertTarget | None = None
    leader: CallerNumber | None = None
    locked: bool | None = None
    manual_answer: bool | None = None
    end_on_leader_exit: bool | None = None


class CallerAdd(Strict):
    number: CallerNumber


class ParticipantUpdate(Strict):
    muted: bool | None = None
    deaf: bool | None = None
    dtmf_enabled: bool | None = None
    on_hold: bool | None = None
    volume_db: int | None = Field(default=None, ge=-12, le=12)


class ParticipantTransfer(Strict):
    target: str = Field(min_length=1, max_length=256)


class SubscriptionCreate(Strict):
    callback_url: AnyHttpUrl
    events: list[str] = Field(default_factory=list)
    expires_in_s: int = Field(default=86_400, ge=60, le=30 * 86_400)

    @field_validator("events")
    @classmethod
    def known_events(cls, events: list[str]) -> list[str]:
        from control.events import EVENT_TYPES

        unknown = [e for e in events if e not in EVENT_TYPES]
        if unknown:
            raise ValueError(f"unknown event types {unknown}; known: {', '.join(EVENT_TYPES)}")
        return events


class SubscriptionRenew(Strict):
    expires_in_s: int = Field(ge=60, le=30 * 86_400)


class ApplicationCreate(Strict):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")]


class TokenCreate(Strict):
    expires_in_s: int | None = Field(default=None, ge=1, le=10 * 365 * 86_400)
