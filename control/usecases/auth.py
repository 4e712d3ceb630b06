"""Who is asking: one lookup for every API. The native bearer token, Teaming's bearer token,
Aculab's Basic password, Hoiio's access_token and Orange's `id` are different extractions of
the same API token; its owner and its expiry are judged here, on the plane's clock (so tests
with an injected clock see tokens expire when they move it)."""

from __future__ import annotations

import hmac
from contextvars import ContextVar
from dataclasses import dataclass

from control.plane import ControlPlane
from control.store.records import Tenant
from control.usecases.errors import Expired, Unauthorized


@dataclass
class AuthAttempt:
    """What one HTTP request did, for the HTTP layer's failed-authentication limit: whatever
    dialect asked, a bad credential here is counted against the request's source address."""

    failed: bool = False
    body_bytes: int = 0


attempt: ContextVar[AuthAttempt | None] = ContextVar("auth_attempt", default=None)


def _note_failure() -> None:
    current = attempt.get()
    if current is not None:
        current.failed = True


async def authenticate(plane: ControlPlane, token: str) -> Tenant:
    """The application owning `token`; Unauthorized when unknown, Expired when out of date."""
    tenant, expired = await plane.store.tenants.token_owner(token, plane.clock())
    if tenant is None:
        _note_failure()
        raise Unauthorized("invalid token")
    if expired:
        raise Expired("Expired credentials")
    return tenant


def is_admin(plane: ControlPlane, token: str) -> bool:
    """The configuration's admin token (compared in constant time)."""
    admin = plane.config.control.admin_token
    return bool(admin) and hmac.compare_digest(admin.encode(), token.encode())


def check_admin(plane: ControlPlane, token: str) -> bool:
    """As `is_admin`, counting a wrong token as a failed authentication."""
    if is_admin(plane, token):
        return True
    _note_failure()
    return False
