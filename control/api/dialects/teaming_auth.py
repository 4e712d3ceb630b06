"""Who may call a Teaming route, and every Teaming error with the numeric `code` the document
shows (`{code, message, description}`).

Credentials: no Authorization header is 400 code 25 "Missing header"; a header that is not
`Bearer <token>` 401 code 40; an unknown token 401 code 41; an expired one 401 code 42 (all
from Orange's general error list; 401s carry `WWW-Authenticate: Bearer`). Scopes: each route
needs one kind (`callManagement`, `notifications` or `configuration`); the user scope reaches
the token's own user, the admin scope every user; a token without it is 403 code 50 "Access
denied", naming the scope. Other errors keep their native message (it names the field or the
thing at fault) with a numeric code: a bad query parameter 400 code 28, a bad body 400 code
22, an unknown user, call, subscription or message 404 code 60, a state that refuses the
request (ANSWER on a call not ringing) 409 code 64, too many 429 code 53 (64 is the bridge's
own: Orange's list names none for a conflict).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from fastapi import Request, Response
from fastapi.responses import JSONResponse

from control.api.auth import plane_of
from control.api.errors import ApiError, from_domain
from control.plane import ControlPlane
from control.store.records import Tenant
from control.usecases import signin
from control.usecases.errors import DomainError, Expired, Unauthorized

P = ParamSpec("P")
R = TypeVar("R")

EXPIRED_DESCRIPTION = (
    "The requested service needs credentials, and the ones provided were out-of-date."
)
CODES = {400: 22, 403: 50, 404: 60, 409: 64, 429: 53}


class TeamingError(Exception):
    """An error answered with one of the document's numeric codes."""

    def __init__(self, status: int, code: int, message: str, description: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.description = status, code, message, description

    def response(self) -> JSONResponse:
        headers = {"WWW-Authenticate": 'Bearer realm="teaming"'} if self.status == 401 else None
        body = {"code": self.code, "message": self.message, "description": self.description}
        return JSONResponse(body, status_code=self.status, headers=headers)


def numbered(error: ApiError) -> TeamingError:
    """A native error with the numeric code of its status (1 for anything unforeseen)."""
    code = CODES.get(error.status, 1)
    return TeamingError(error.status, code, error.message, error.description or error.message)


def query_invalid(name: str, problem: str) -> TeamingError:
    return TeamingError(
        400, 28, f"{name}: {problem}", f"The query-string parameter {name!r} is invalid."
    )


def teaming_errors(endpoint: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R | Response]]:
    """Answer every error of a Teaming route in the document's numeric shape."""

    @functools.wraps(endpoint)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | Response:
        try:
            return await endpoint(*args, **kwargs)
        except TeamingError as exc:
            return exc.response()
        except ApiError as exc:
            return numbered(exc).response()
        except DomainError as exc:
            return numbered(from_domain(exc)).response()

    return wrapper


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization")
    if header is None:
        raise TeamingError(400, 25, "The Authorization header is missing.", "Missing header")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TeamingError(
            401, 40, "Missing credentials", "Send 'Authorization: Bearer <access_token>'."
        )
    return token.strip()


async def access_of(plane: ControlPlane, token: str) -> signin.Access:
    try:
        return await signin.access(plane, token)
    except Expired:
        raise TeamingError(401, 42, "Expired credentials", EXPIRED_DESCRIPTION) from None
    except Unauthorized:
        raise TeamingError(
            401, 41, "Invalid credentials", "The access token is not known: check it."
        ) from None


def is_user(tenant: Tenant, user_id: str) -> bool:
    return user_id in (tenant.id, tenant.name)


def access_denied(kind: str) -> TeamingError:
    return TeamingError(
        403,
        50,
        "Access denied",
        f"The access token lacks the scope b2b:teaming:user:{kind} (or its admin scope).",
    )


async def authorize(
    request: Request, kind: str, user_id: str | None = None
) -> tuple[ControlPlane, Tenant]:
    """The plane and the user the request acts on: the token's own (it needs the user scope of
    `kind`), or, with the admin scope of `kind`, the path's `{id}` whoever it is."""
    plane = plane_of(request)
    grant = await access_of(plane, bearer_token(request))
    own = user_id is None or is_user(grant.tenant, user_id)
    if own and grant.allows(kind):
        return plane, grant.tenant
    if grant.allows(kind, admin=True):
        if own:
            return plane, grant.tenant
        other = await plane.store.tenants.get_tenant(user_id or "")
        if other is not None:
            return plane, other
    if not own:
        raise TeamingError(404, 60, f"user {user_id!r} not found", "Resource not found")
    raise access_denied(kind)
