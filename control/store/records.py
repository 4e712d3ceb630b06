"""What the store hands out: frozen dataclasses, never ORM objects, so callers cannot trigger
lazy database I/O and records can cross tasks freely."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

STATES = ("RESERVED", "HOLDING", "ACTIVE", "COMPLETED")
DIRECTIONS = ("in", "out")


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    created_at: datetime


@dataclass(frozen=True)
class Conference:
    id: str
    tenant_id: str
    name: str
    access: str
    code: str | None
    start_at: datetime | None
    duration_s: int | None
    max_participants: int | None
    divert_to: str | None
    leader: str | None
    locked: bool
    manual_answer: bool
    end_on_leader_exit: bool
    state: str
    created_at: datetime
    ended_at: datetime | None
    end_reason: str | None
    warned: bool
    callers: tuple[str, ...] = ()

    @property
    def end_at(self) -> datetime | None:
        """When the booked time runs out (None: no duration, runs until ended)."""
        if self.duration_s is None:
            return None
        return (self.start_at or self.created_at) + timedelta(seconds=self.duration_s)


@dataclass(frozen=True)
class Subscription:
    id: str
    tenant_id: str
    callback_url: str
    event_types: tuple[str, ...]
    expires_at: datetime
    created_at: datetime
    label: str | None = None  # the client's own name for it (Teaming's applicationId)

    def wants(self, event_type: str, now: datetime) -> bool:
        """True when this subscription should receive an event of that type at `now`."""
        return self.expires_at > now and (not self.event_types or event_type in self.event_types)


@dataclass(frozen=True)
class CallRecord:
    id: str
    tenant_id: str | None
    conference_id: str | None
    room: str
    call_id: str
    direction: str
    caller: str
    callee: str
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime | None
    end_reason: str | None
    tag: str | None = None

    @property
    def duration_s(self) -> float:
        """Talk time: answer to hang-up; 0 for a call never answered or not yet ended."""
        if self.answered_at is None or self.ended_at is None:
            return 0.0
        return max(0.0, (self.ended_at - self.answered_at).total_seconds())


@dataclass(frozen=True)
class OutboxItem:
    id: int
    subscription_id: str | None  # None: a one-off notification (e.g. a dial-out's notify_url)
    tenant_id: str
    event_type: str
    payload: dict[str, Any]
    callback_url: str
    attempts: int
    next_attempt_at: datetime | None
    created_at: datetime


@dataclass(frozen=True)
class OAuthClient:
    """A client application of the Teaming sign-in, owned by one application (tenant)."""

    id: str
    tenant_id: str
    redirect_uris: tuple[str, ...]
    scopes: tuple[str, ...]
    hourly_quota: int
    token_lifetime_s: int
    created_at: datetime


@dataclass(frozen=True)
class OAuthToken:
    """An issued access token: who it acts as, with which scopes, until when."""

    client_id: str
    tenant_id: str
    scopes: tuple[str, ...]
    issued_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class OAuthCode:
    """An authorization code a user granted a client on the consent page."""

    client_id: str
    tenant_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    expires_at: datetime


@dataclass(frozen=True)
class ForwardingRule:
    """One call-forwarding service of an application: `service` is Teaming's name for it."""

    tenant_id: str
    service: str
    active: bool
    forward_to: str | None
    ring_splash: bool
    rings: int | None = None  # callForwardingNoAnswer: rings before forwarding


@dataclass(frozen=True)
class VoiceMessage:
    id: str
    tenant_id: str
    caller: str
    caller_name: str
    created_at: datetime
    duration_ms: int
    path: str
    read: bool
