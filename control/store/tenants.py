"""Tenants (applications) and their API tokens. Tokens are kept only as SHA-256 digests: a
token is 32 random bytes, so a plain hash is enough (no salt or slow hash needed)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

import structlog
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError

from .base import StoreBase, new_id, utcnow
from .errors import Conflict, NotFound
from .models import ApiTokenRow, TenantRow
from .records import Tenant

log = structlog.get_logger(__name__)

TOKEN_PREFIX = "cb_"


def hash_token(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def tenant_record(row: TenantRow) -> Tenant:
    return Tenant(id=row.id, name=row.name, created_at=row.created_at)


class TenantQueries(StoreBase):
    async def create_tenant(self, name: str, *, now: datetime | None = None) -> Tenant:
        row = TenantRow(id=new_id(), name=name, created_at=now or utcnow())
        try:
            async with self._session() as session, session.begin():
                session.add(row)
        except IntegrityError as exc:
            raise Conflict(f"tenant {name!r} exists") from exc
        log.info("store.tenant_created", tenant=row.id, name=name)
        return tenant_record(row)

    async def get_tenant(self, name_or_id: str) -> Tenant | None:
        query = select(TenantRow).where(
            or_(TenantRow.id == name_or_id, TenantRow.name == name_or_id)
        )
        async with self._session() as session:
            rows = (await session.scalars(query)).all()
        # An id match wins over a tenant that happens to be named like another's id.
        rows = sorted(rows, key=lambda row: row.id != name_or_id)
        return tenant_record(rows[0]) if rows else None

    async def list_tenants(self) -> list[Tenant]:
        async with self._session() as session:
            rows = (await session.scalars(select(TenantRow).order_by(TenantRow.name))).all()
        return [tenant_record(row) for row in rows]

    async def create_token(
        self, tenant_id: str, *, now: datetime | None = None, expires_at: datetime | None = None
    ) -> str:
        """Make a new token and return it in plaintext: the only time anyone sees it."""
        plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
        await self._insert_token(tenant_id, plaintext, now, expires_at)
        return plaintext

    async def add_token(
        self, tenant_id: str, plaintext: str, *, now: datetime | None = None
    ) -> None:
        """Register a token given in the config file; adding it again is a no-op."""
        digest = hash_token(plaintext)
        async with self._session() as session:
            owner = await session.scalar(
                select(ApiTokenRow.tenant_id).where(ApiTokenRow.token_hash == digest)
            )
        if owner == tenant_id:
            return
        if owner is not None:
            raise Conflict("token already belongs to another tenant")
        await self._insert_token(tenant_id, plaintext, now)

    async def tenant_for_token(
        self, plaintext: str, now: datetime | None = None
    ) -> Tenant | None:
        """The token's tenant; None for an unknown or expired token."""
        tenant, expired = await self.token_owner(plaintext, now)
        return None if expired else tenant

    async def token_owner(
        self, plaintext: str, now: datetime | None = None
    ) -> tuple[Tenant | None, bool]:
        """The token's tenant (None when unknown) and whether the token has expired at `now`,
        so an API can tell "expired credentials" from "invalid token"."""
        query = (
            select(TenantRow, ApiTokenRow.expires_at)
            .join(ApiTokenRow, ApiTokenRow.tenant_id == TenantRow.id)
            .where(ApiTokenRow.token_hash == hash_token(plaintext))
        )
        async with self._session() as session:
            found = (await session.execute(query)).first()
        if found is None:
            return None, False
        row, expires_at = found
        expired = expires_at is not None and expires_at <= (now or utcnow())
        return tenant_record(row), expired

    async def _insert_token(
        self,
        tenant_id: str,
        plaintext: str,
        now: datetime | None,
        expires_at: datetime | None = None,
    ) -> None:
        row = ApiTokenRow(
            id=new_id(),
            tenant_id=tenant_id,
            token_hash=hash_token(plaintext),
            prefix=plaintext[:8],
            created_at=now or utcnow(),
            expires_at=expires_at,
        )
        try:
            async with self._session() as session, session.begin():
                if await session.get(TenantRow, tenant_id) is None:
                    raise NotFound(f"tenant {tenant_id}")
                session.add(row)
        except IntegrityError as exc:
            raise Conflict("token exists") from exc
        log.info("store.token_added", tenant=tenant_id, prefix=row.prefix)
