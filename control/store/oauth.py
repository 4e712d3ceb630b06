"""The Teaming sign-in's tables: OAuth client applications, issued access tokens and
authorization codes. Secrets, tokens and codes are random and kept only as SHA-256 digests
(as API tokens are: 32 random bytes need no salt or slow hash)."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

import structlog
from sqlalchemy import delete, func, select

from .base import StoreBase, new_id
from .errors import NotFound
from .models import OAuthClientRow, OAuthCodeRow, OAuthTokenRow, TenantRow
from .records import OAuthClient, OAuthCode, OAuthToken
from .tenants import hash_token

log = structlog.get_logger(__name__)

ACCESS_TOKEN_PREFIX = "tm_"


def client_record(row: OAuthClientRow) -> OAuthClient:
    return OAuthClient(
        id=row.id,
        tenant_id=row.tenant_id,
        redirect_uris=tuple(row.redirect_uris),
        scopes=tuple(row.scopes),
        hourly_quota=row.hourly_quota,
        token_lifetime_s=row.token_lifetime_s,
        created_at=row.created_at,
    )


class OAuthQueries(StoreBase):
    async def create_client(
        self,
        tenant_id: str,
        *,
        redirect_uris: tuple[str, ...],
        scopes: tuple[str, ...],
        hourly_quota: int,
        token_lifetime_s: int,
        now: datetime,
    ) -> tuple[OAuthClient, str]:
        """Register a client; returns it and its secret in plaintext (shown only once)."""
        secret = secrets.token_urlsafe(32)
        row = OAuthClientRow(
            id=new_id(),
            tenant_id=tenant_id,
            secret_hash=hash_token(secret),
            redirect_uris=list(redirect_uris),
            scopes=list(scopes),
            hourly_quota=hourly_quota,
            token_lifetime_s=token_lifetime_s,
            created_at=now,
        )
        async with self._session() as session, session.begin():
            if await session.get(TenantRow, tenant_id) is None:
                raise NotFound(f"tenant {tenant_id}")
            session.add(row)
        log.info("store.oauth_client_created", tenant=tenant_id, client=row.id)
        return client_record(row), secret

    async def get_client(self, client_id: str) -> OAuthClient | None:
        async with self._session() as session:
            row = await session.get(OAuthClientRow, client_id)
        return client_record(row) if row is not None else None

    async def check_client(self, client_id: str, secret: str) -> OAuthClient | None:
        """The client when `secret` is its secret, else None."""
        async with self._session() as session:
            row = await session.get(OAuthClientRow, client_id)
        if row is None or not secrets.compare_digest(row.secret_hash, hash_token(secret)):
            return None
        return client_record(row)

    async def tokens_issued_since(self, client_id: str, since: datetime) -> tuple[int, datetime]:
        """How many tokens the client got since `since`, and when the oldest of them was
        issued (`since` when none): the quota's window frees up an hour after that."""
        query = select(func.count(), func.min(OAuthTokenRow.issued_at)).where(
            OAuthTokenRow.client_id == client_id, OAuthTokenRow.issued_at > since
        )
        async with self._session() as session:
            count, oldest = (await session.execute(query)).one()
        return int(count), oldest or since

    async def issue_token(
        self,
        client_id: str,
        tenant_id: str,
        scopes: tuple[str, ...],
        *,
        now: datetime,
        expires_at: datetime,
    ) -> str:
        """A new access token in plaintext; tokens that expired over a day ago go meanwhile."""
        plaintext = ACCESS_TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = OAuthTokenRow(
            id=new_id(),
            client_id=client_id,
            tenant_id=tenant_id,
            token_hash=hash_token(plaintext),
            scopes=list(scopes),
            issued_at=now,
            expires_at=expires_at,
        )
        async with self._session() as session, session.begin():
            # a day is past any quota window (an hour): older expired tokens serve nothing
            stale = OAuthTokenRow.expires_at < now - timedelta(days=1)
            await session.execute(delete(OAuthTokenRow).where(stale))
            session.add(row)
        log.info("store.oauth_token_issued", client=client_id, tenant=tenant_id)
        return plaintext

    async def find_token(self, plaintext: str) -> OAuthToken | None:
        query = select(OAuthTokenRow).where(OAuthTokenRow.token_hash == hash_token(plaintext))
        async with self._session() as session:
            row = await session.scalar(query)
        if row is None:
            return None
        return OAuthToken(
            client_id=row.client_id,
            tenant_id=row.tenant_id,
            scopes=tuple(row.scopes),
            issued_at=row.issued_at,
            expires_at=row.expires_at,
        )

    async def create_code(
        self,
        client_id: str,
        tenant_id: str,
        redirect_uri: str,
        scopes: tuple[str, ...],
        expires_at: datetime,
    ) -> str:
        plaintext = secrets.token_urlsafe(24)
        row = OAuthCodeRow(
            id=new_id(),
            client_id=client_id,
            tenant_id=tenant_id,
            code_hash=hash_token(plaintext),
            redirect_uri=redirect_uri,
            scopes=list(scopes),
            expires_at=expires_at,
        )
        async with self._session() as session, session.begin():
            session.add(row)
        return plaintext

    async def take_code(self, plaintext: str) -> OAuthCode | None:
        """The code's grant, deleted in the same transaction: a code works once."""
        query = select(OAuthCodeRow).where(OAuthCodeRow.code_hash == hash_token(plaintext))
        async with self._session() as session, session.begin():
            row = await session.scalar(query)
            if row is None:
                return None
            await session.delete(row)
        return OAuthCode(
            client_id=row.client_id,
            tenant_id=row.tenant_id,
            redirect_uri=row.redirect_uri,
            scopes=tuple(row.scopes),
            expires_at=row.expires_at,
        )
