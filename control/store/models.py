"""The control plane's tables, as SQLAlchemy 2 declarative models.

Only the store touches these; callers get frozen records (records.py). Every time column is an
absolute UTC instant: SQLite keeps it as naive UTC text (which sorts correctly), PostgreSQL as
timestamptz, and both give back timezone-aware UTC datetimes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

OPEN_NAME_WHERE = text("state != 'COMPLETED'")


class UtcDateTime(TypeDecorator[datetime]):
    """An aware datetime stored as UTC; naive values are refused so no local time sneaks in."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware (UTC) datetime")
        value = value.astimezone(UTC)
        # SQLite has no time zones: naive UTC text keeps comparisons and ordering right.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UtcDateTime, dict[str, Any]: JSON}


class TenantRow(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime]


class ApiTokenRow(Base):
    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    prefix: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]  # None: never expires


class ConferenceRow(Base):
    """A room. Its name is unique among conferences that are not COMPLETED (a partial unique
    index), so a finished room keeps its history while the name is reused."""

    __tablename__ = "conferences"
    __table_args__ = (
        Index(
            "uq_conferences_open_name",
            "name",
            unique=True,
            sqlite_where=OPEN_NAME_WHERE,
            postgresql_where=OPEN_NAME_WHERE,
        ),
        Index("ix_conferences_tenant_id_created_at", "tenant_id", "created_at"),
        Index("ix_conferences_state", "state"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(32), ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    access: Mapped[str] = mapped_column(String(16))
    code: Mapped[str | None] = mapped_column(String(32))
    start_at: Mapped[datetime | None]
    duration_s: Mapped[int | None] = mapped_column(Integer)
    max_participants: Mapped[int | None] = mapped_column(Integer)
    divert_to: Mapped[str | None] = mapped_column(String(255))
    leader: Mapped[str | None] = mapped_column(String(64))
    locked: Mapped[bool] = mapped_column(Boolean, default=False)
    manual_answer: Mapped[bool] = mapped_column(Boolean, default=False)
    end_on_leader_exit: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(String(64))
    warned: Mapped[bool] = mapped_column(Boolean, default=False)


class ConferenceCallerRow(Base):
    """A number allowed into a caller-restricted room; the id keeps the order they were given."""

    __tablename__ = "conference_callers"
    __table_args__ = (UniqueConstraint("conference_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conference_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("conferences.id", ondelete="CASCADE")
    )
    number: Mapped[str] = mapped_column(String(64))


class SubscriptionRow(Base):
    __tablename__ = "subscriptions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    callback_url: Mapped[str] = mapped_column(Text)
    event_types: Mapped[list[str]] = mapped_column(JSON)
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime]
    label: Mapped[str | None] = mapped_column(String(128))  # the client's own name for it


class CallRecordRow(Base):
    """One call leg (CDR). It outlives its conference and tenant, hence SET NULL."""

    __tablename__ = "call_records"
    __table_args__ = (Index("ix_call_records_tenant_id_started_at", "tenant_id", "started_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("tenants.id", ondelete="SET NULL")
    )
    conference_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("conferences.id", ondelete="SET NULL"), index=True
    )
    room: Mapped[str] = mapped_column(String(64))
    call_id: Mapped[str] = mapped_column(String(255), index=True)
    direction: Mapped[str] = mapped_column(String(3))
    caller: Mapped[str] = mapped_column(String(255))
    callee: Mapped[str] = mapped_column(String(255))
    started_at: Mapped[datetime]
    answered_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(String(64))
    tag: Mapped[str | None] = mapped_column(String(256))  # a call out's client reference


class OutboxRow(Base):
    """One webhook delivery. Pending: delivered_at NULL and next_attempt_at set; a delivery
    given up on keeps delivered_at NULL and has next_attempt_at NULL."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_delivered_at_next_attempt_at", "delivered_at", "next_attempt_at"),
        Index("ix_outbox_subscription_id_delivered_at", "subscription_id", "delivered_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subscription_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("subscriptions.id", ondelete="CASCADE")
    )
    callback_url: Mapped[str | None] = mapped_column(Text)  # a one-off notification's own URL
    tenant_id: Mapped[str] = mapped_column(String(32))
    event_type: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)


class OAuthClientRow(Base):
    """A client application registered for the Teaming sign-in (OAuth 2.0): its secret kept as
    a digest, the scopes it may ask for, its redirect URIs, its hourly token quota."""

    __tablename__ = "oauth_clients"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # the client_id
    tenant_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    secret_hash: Mapped[str] = mapped_column(String(64))
    redirect_uris: Mapped[list[str]] = mapped_column(JSON)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    hourly_quota: Mapped[int] = mapped_column(Integer)
    token_lifetime_s: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]


class OAuthTokenRow(Base):
    """An access token issued by the token endpoint, for the user (tenant) it acts as; kept
    after expiry for an hour at least, since the hourly quota counts them."""

    __tablename__ = "oauth_tokens"
    __table_args__ = (Index("ix_oauth_tokens_client_id_issued_at", "client_id", "issued_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    client_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("oauth_clients.id", ondelete="CASCADE")
    )
    tenant_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    issued_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class OAuthCodeRow(Base):
    """An authorization code a user granted on the consent page; used once, then deleted."""

    __tablename__ = "oauth_codes"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    client_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("oauth_clients.id", ondelete="CASCADE"), index=True
    )
    tenant_id: Mapped[str] = mapped_column(String(32), ForeignKey("tenants.id", ondelete="CASCADE"))
    code_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    redirect_uri: Mapped[str] = mapped_column(Text)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    expires_at: Mapped[datetime]


class CallForwardingRow(Base):
    """One of an application's call-forwarding services (Teaming's `services/{service}`)."""

    __tablename__ = "call_forwarding"

    tenant_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    service: Mapped[str] = mapped_column(String(32), primary_key=True)
    active: Mapped[bool] = mapped_column(Boolean)
    forward_to: Mapped[str | None] = mapped_column(String(255))
    ring_splash: Mapped[bool] = mapped_column(Boolean)
    updated_at: Mapped[datetime]
    rings: Mapped[int | None] = mapped_column(Integer)  # callForwardingNoAnswer's numberOfRings


class VoiceMessageRow(Base):
    """A message a caller left on an application's line (Teaming's voice mail)."""

    __tablename__ = "voice_messages"
    __table_args__ = (Index("ix_voice_messages_tenant_id_created_at", "tenant_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(32), ForeignKey("tenants.id", ondelete="CASCADE"))
    caller: Mapped[str] = mapped_column(String(255))
    caller_name: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime]
    duration_ms: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text)
    read: Mapped[bool] = mapped_column(Boolean, default=False)
