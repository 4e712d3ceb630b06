"""The Teaming sign-in (seed 002): OAuth 2.0 (RFC 6749) for registered client applications.

A client (client id + secret) belongs to one application (tenant), which registered it. It gets
access tokens by the client-credentials grant (the token acts as its own application) or by
the authorization-code grant (the token acts as the user, an application, who signed in on the
consent page with its name and one of its API tokens and approved the scopes). Tokens carry
scopes; each expires after the client's lifetime; each client may get `hourly_quota` tokens in
any rolling hour. An application's plain API token still works on the Teaming routes, with
every user scope (so nothing that worked before breaks). Admin scopes reach every user: a
client asks for them only when the admin registered it with them, and only by the
client-credentials grant (a consenting user grants user scopes only).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from control.plane import ControlPlane
from control.store.records import OAuthClient, Tenant
from control.usecases.auth import authenticate
from control.usecases.errors import DomainError, Expired, Unauthorized

SCOPE_PREFIX = "b2b:teaming:"
KINDS = ("callManagement", "notifications", "configuration")
USER_SCOPES = tuple(f"{SCOPE_PREFIX}user:{kind}" for kind in KINDS)
ADMIN_SCOPES = tuple(f"{SCOPE_PREFIX}admin:{kind}" for kind in KINDS)
ALL_SCOPES = USER_SCOPES + ADMIN_SCOPES
CODE_LIFETIME = timedelta(minutes=10)
QUOTA_WINDOW = timedelta(hours=1)


class OAuthError(DomainError):
    """A refusal in RFC 6749's terms: `error` is its error code, `status` the HTTP status."""

    def __init__(self, error: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.error, self.status = error, status


class QuotaExceeded(OAuthError):
    """The client had its hourly quota of tokens; one frees up in `retry_after_s`."""

    def __init__(self, quota: int, retry_after_s: int) -> None:
        super().__init__(
            "access_denied", f"hourly token quota of {quota} reached for this client", 429
        )
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int
    scopes: tuple[str, ...]


@dataclass(frozen=True)
class Access:
    """Who a bearer token acts as, and what it may do."""

    tenant: Tenant
    scopes: frozenset[str]

    def allows(self, kind: str, admin: bool = False) -> bool:
        return f"{SCOPE_PREFIX}{'admin' if admin else 'user'}:{kind}" in self.scopes


@dataclass(frozen=True)
class AuthorizationRequest:
    """A checked authorization request, as the consent page shows and posts it."""

    client: OAuthClient
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str | None


def parse_scopes(raw: str | None, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """The space-separated scopes asked for (all the client's when none are named)."""
    if raw is None or not raw.strip():
        return allowed
    asked = tuple(dict.fromkeys(raw.split()))
    unknown = [s for s in asked if s not in ALL_SCOPES]
    if unknown:
        raise OAuthError("invalid_scope", f"scope: unknown scope {unknown[0]!r}")
    refused = [s for s in asked if s not in allowed]
    if refused:
        raise OAuthError("invalid_scope", f"scope: {refused[0]!r} is not granted to this client")
    return asked


async def client_of(plane: ControlPlane, client_id: str | None, secret: str | None) -> OAuthClient:
    """The client authenticated by its id and secret (RFC 6749 2.3.1)."""
    if not client_id or secret is None:
        raise OAuthError("invalid_client", "client_id and client_secret are required", 401)
    client = await plane.store.oauth.check_client(client_id, secret)
    if client is None:
        raise OAuthError("invalid_client", "unknown client or wrong secret", 401)
    return client


async def issue(
    plane: ControlPlane, client: OAuthClient, tenant_id: str, scopes: tuple[str, ...]
) -> IssuedToken:
    """A token for `tenant_id`, within the client's hourly quota."""
    now = plane.clock()
    issued, oldest = await plane.store.oauth.tokens_issued_since(client.id, now - QUOTA_WINDOW)
    if issued >= client.hourly_quota:
        wait = (oldest + QUOTA_WINDOW - now).total_seconds()
        raise QuotaExceeded(client.hourly_quota, max(1, int(wait + 0.999)))
    lifetime = client.token_lifetime_s
    token = await plane.store.oauth.issue_token(
        client.id, tenant_id, scopes, now=now, expires_at=now + timedelta(seconds=lifetime)
    )
    return IssuedToken(token, lifetime, scopes)


async def client_credentials(
    plane: ControlPlane, client: OAuthClient, scope: str | None
) -> IssuedToken:
    """The client-credentials grant: a token acting as the client's own application."""
    return await issue(plane, client, client.tenant_id, parse_scopes(scope, client.scopes))


def user_scopes(client: OAuthClient) -> tuple[str, ...]:
    return tuple(s for s in client.scopes if s in USER_SCOPES)


async def authorization_request(
    plane: ControlPlane,
    client_id: str | None,
    redirect_uri: str | None,
    response_type: str | None,
    scope: str | None,
    state: str | None,
) -> AuthorizationRequest:
    """Check an authorization request. Errors about the client or the redirect URI are
    Unredirectable (the page answers them); the others are Redirected to the client."""
    client = await plane.store.oauth.get_client(client_id) if client_id else None
    if client is None:
        raise Unredirectable("client_id: unknown client")
    if redirect_uri is None and len(client.redirect_uris) == 1:
        redirect_uri = client.redirect_uris[0]
    if redirect_uri is None or redirect_uri not in client.redirect_uris:
        raise Unredirectable("redirect_uri: not one of the client's registered redirect URIs")
    request = AuthorizationRequest(client, redirect_uri, (), state)
    if response_type != "code":
        raise Redirected(request, "unsupported_response_type", "response_type must be 'code'")
    try:
        scopes = parse_scopes(scope, user_scopes(client))
    except OAuthError as exc:
        raise Redirected(request, exc.error, exc.message) from None
    return AuthorizationRequest(client, redirect_uri, scopes, state)


class Unredirectable(OAuthError):
    """An authorization request the page answers itself (RFC 6749 4.1.2.1: never redirect to
    an unchecked URI)."""

    def __init__(self, message: str) -> None:
        super().__init__("invalid_request", message)


class Redirected(OAuthError):
    """An authorization request refused back to the client's redirect URI."""

    def __init__(self, request: AuthorizationRequest, error: str, message: str) -> None:
        super().__init__(error, message)
        self.request = request


async def approve(
    plane: ControlPlane, request: AuthorizationRequest, user: str, password: str
) -> str:
    """The user signed in (application name or id, and one of its API tokens) and approved:
    an authorization code for the client."""
    try:
        tenant = await authenticate(plane, password)
    except Unauthorized:
        raise BadSignIn() from None
    if user not in (tenant.id, tenant.name):
        raise BadSignIn()
    return await plane.store.oauth.create_code(
        request.client.id,
        tenant.id,
        request.redirect_uri,
        request.scopes,
        plane.clock() + CODE_LIFETIME,
    )


class BadSignIn(OAuthError):
    def __init__(self) -> None:
        super().__init__("access_denied", "wrong user or password", 401)


async def authorization_code(
    plane: ControlPlane, client: OAuthClient, code: str | None, redirect_uri: str | None
) -> IssuedToken:
    """The authorization-code grant: a token acting as the user who approved."""
    if not code:
        raise OAuthError("invalid_request", "code: required")
    grant = await plane.store.oauth.take_code(code)
    if grant is None or grant.client_id != client.id:
        raise OAuthError("invalid_grant", "code: unknown, used or issued to another client")
    if grant.expires_at <= plane.clock():
        raise OAuthError("invalid_grant", "code: expired")
    if redirect_uri != grant.redirect_uri:
        raise OAuthError("invalid_grant", "redirect_uri: not the one the code was issued to")
    return await issue(plane, client, grant.tenant_id, grant.scopes)


async def access(plane: ControlPlane, token: str) -> Access:
    """Who a bearer token acts as: an issued access token with its scopes, or an application's
    API token with every user scope. Unauthorized when unknown, Expired when out of date."""
    issued = await plane.store.oauth.find_token(token)
    if issued is None:
        return Access(await authenticate(plane, token), frozenset(USER_SCOPES))
    if issued.expires_at <= plane.clock():
        raise Expired("Expired credentials")
    tenant = await plane.store.tenants.get_tenant(issued.tenant_id)
    if tenant is None:
        raise Unauthorized("invalid token")
    return Access(tenant, frozenset(issued.scopes))


async def register_client(
    plane: ControlPlane,
    tenant: Tenant,
    redirect_uris: tuple[str, ...],
    scopes: tuple[str, ...],
    hourly_quota: int,
    token_lifetime_s: int,
) -> tuple[OAuthClient, str]:
    return await plane.store.oauth.create_client(
        tenant.id,
        redirect_uris=redirect_uris,
        scopes=scopes,
        hourly_quota=hourly_quota,
        token_lifetime_s=token_lifetime_s,
        now=plane.clock(),
    )
