"""The Teaming sign-in's routes (seed 002: "a token API from the token endpoint"): the token
endpoint at the document's path under the bridge's base URL, the consent page of the
authorization-code grant, and the registration of client applications by the admin. The
grants themselves are the use case's (`control.usecases.signin`).

Choices where the document is silent (it defers to Orange's "detailed authentication method"):
- `POST /openidconnect/b2b/v1/token`, form-encoded as RFC 6749 says: `grant_type`
  `client_credentials` (optional `scope`) or `authorization_code` (`code`, `redirect_uri`). The
  client authenticates with HTTP Basic (client id / secret, as Orange's token endpoints take
  it) or with `client_id` + `client_secret` form fields. The answer is RFC 6749's:
  `{access_token, token_type: "Bearer", expires_in, scope}`, `Cache-Control: no-store`; no
  refresh token (the document says to ask again once a route answers 401 code 42).
- The token endpoint's errors are RFC 6749's shape `{error, error_description}` (what OAuth
  client libraries read): 400 `invalid_request`, `unsupported_grant_type`, `invalid_scope`,
  `invalid_grant`; 401 `invalid_client` with `WWW-Authenticate: Basic`. The hourly quota
  spent is 429 `access_denied` with `Retry-After` (seconds until the oldest token of the
  window is an hour old).
- `GET /openidconnect/b2b/v1/authorize?response_type=code&client_id=&redirect_uri=&scope=&state=`
  shows the consent page: the client, the scopes asked for, a sign-in form (the user is an
  application: its name or id, and one of its API tokens as the password), Approve and Deny.
  The form posts back to the same path; Approve redirects (302) to `redirect_uri` with `code`
  and `state`, Deny with `error=access_denied`. An unknown client or unregistered redirect URI
  is a 400 page (never a redirect); a bad `response_type` or `scope` is redirected as RFC 6749
  4.1.2.1 says. A wrong sign-in shows the page again with a 401. Codes last 10 minutes, once.
- `POST /v1/admin/applications/{name}/clients` (the admin token; the developer portal's
  registration): `{redirect_uris: [...], scopes: [...], hourly_quota, token_lifetime_s}`,
  answered 201 with `client_id` and `client_secret` (shown once). Defaults: the three user
  scopes, 100 tokens an hour, 3600 s tokens.
"""

from __future__ import annotations

import base64
import binascii
import html
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field

from control.api.auth import PlaneDep, require_admin
from control.api.errors import invalid, not_found
from control.plane import ControlPlane
from control.usecases import signin
from control.usecases.signin import AuthorizationRequest, IssuedToken, OAuthError

TOKEN_PATH = "/openidconnect/b2b/v1/token"
AUTHORIZE_PATH = "/openidconnect/b2b/v1/authorize"

router = APIRouter(tags=["teaming sign-in"])


def oauth_error(exc: OAuthError) -> JSONResponse:
    headers = {"Cache-Control": "no-store"}
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="teaming"'
    if isinstance(exc, signin.QuotaExceeded):
        headers["Retry-After"] = str(exc.retry_after_s)
    body = {"error": exc.error, "error_description": exc.message}
    return JSONResponse(body, status_code=exc.status, headers=headers)


async def form_of(request: Request) -> dict[str, str]:
    try:
        text = (await request.body()).decode("utf-8")
        return dict(parse_qsl(text, keep_blank_values=True, strict_parsing=False))
    except (UnicodeDecodeError, ValueError):
        raise OAuthError("invalid_request", "body: not a form-encoded body") from None


def basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        raise OAuthError("invalid_client", "Authorization: use Basic client_id:client_secret", 401)
    try:
        client_id, colon, secret = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        client_id, colon, secret = "", "", ""
    if not colon:
        raise OAuthError("invalid_client", "Authorization: not valid Basic credentials", 401)
    return client_id, secret


def token_reply(token: IssuedToken) -> JSONResponse:
    body = {
        "access_token": token.access_token,
        "token_type": "Bearer",
        "expires_in": token.expires_in,
        "scope": " ".join(token.scopes),
    }
    return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


@router.post(TOKEN_PATH)
async def token(request: Request, plane: PlaneDep) -> Response:
    """Issue an access token (client-credentials or authorization-code grant)."""
    try:
        form = await form_of(request)
        credentials = basic_credentials(request) or (
            form.get("client_id"),
            form.get("client_secret"),
        )
        grant = form.get("grant_type")
        if not grant:
            raise OAuthError("invalid_request", "grant_type: required")
        if grant not in ("client_credentials", "authorization_code"):
            raise OAuthError("unsupported_grant_type", f"grant_type: {grant!r} is not supported")
        client = await signin.client_of(plane, *credentials)
        if grant == "client_credentials":
            issued = await signin.client_credentials(plane, client, form.get("scope"))
        else:
            issued = await signin.authorization_code(
                plane, client, form.get("code"), form.get("redirect_uri")
            )
    except OAuthError as exc:
        return oauth_error(exc)
    return token_reply(issued)


# --- the consent page -------------------------------------------------------------------------


SCOPE_TEXT = {
    "callManagement": "see, answer, hold and release your calls",
    "notifications": "be told of your calls (subscriptions)",
    "configuration": "read your telephony profile and set your call forwarding",
}


def page(body: str, status: int = 200) -> HTMLResponse:
    document = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Teaming sign-in</title></head>"
        f"<body>{body}</body></html>"
    )
    return HTMLResponse(document, status_code=status, headers={"Cache-Control": "no-store"})


def consent_page(ask: AuthorizationRequest, problem: str = "", status: int = 200) -> HTMLResponse:
    hidden = {
        "response_type": "code",
        "client_id": ask.client.id,
        "redirect_uri": ask.redirect_uri,
        "scope": " ".join(ask.scopes),
        "state": ask.state or "",
    }
    fields = "".join(
        f"<input type='hidden' name='{k}' value='{html.escape(v, quote=True)}'>"
        for k, v in hidden.items()
    )
    scopes = "".join(
        f"<li><code>{html.escape(s)}</code>: {SCOPE_TEXT[s.rsplit(':', 1)[1]]}</li>"
        for s in ask.scopes
    )
    error = f"<p role='alert'>{html.escape(problem)}</p>" if problem else ""
    return page(
        f"<h1>Sign in to allow an application</h1>{error}"
        f"<p>The application <code>{html.escape(ask.client.id)}</code> asks to:</p>"
        f"<ul>{scopes}</ul>"
        f"<form method='post' action='{AUTHORIZE_PATH}'>{fields}"
        "<label>User <input name='user' autocomplete='username'></label> "
        "<label>Password (an API token) <input name='password' type='password'></label> "
        "<button name='decision' value='approve'>Approve</button> "
        "<button name='decision' value='deny'>Deny</button></form>",
        status,
    )


def redirect(uri: str, **params: str | None) -> RedirectResponse:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    joiner = "&" if "?" in uri else "?"
    return RedirectResponse(f"{uri}{joiner}{query}", status_code=302)


async def checked(plane: ControlPlane, params: dict[str, str]) -> AuthorizationRequest:
    return await signin.authorization_request(
        plane,
        params.get("client_id"),
        params.get("redirect_uri"),
        params.get("response_type"),
        params.get("scope"),
        params.get("state") or None,
    )


def refused(exc: OAuthError) -> Response:
    if isinstance(exc, signin.Redirected):
        ask = exc.request
        return redirect(
            ask.redirect_uri, error=exc.error, error_description=exc.message, state=ask.state
        )
    return page(f"<h1>Bad authorization request</h1><p>{html.escape(exc.message)}</p>", 400)


@router.get(AUTHORIZE_PATH, response_class=HTMLResponse)
async def authorize_page(request: Request, plane: PlaneDep) -> Response:
    """The consent page of the authorization-code grant."""
    try:
        ask = await checked(plane, dict(request.query_params))
    except OAuthError as exc:
        return refused(exc)
    return consent_page(ask)


@router.post(AUTHORIZE_PATH, response_class=HTMLResponse)
async def authorize_decision(request: Request, plane: PlaneDep) -> Response:
    """The user's answer on the consent page: a code, or access_denied, to the client."""
    try:
        form = await form_of(request)
        ask = await checked(plane, form)
    except OAuthError as exc:
        return refused(exc)
    if form.get("decision") != "approve":
        return redirect(ask.redirect_uri, error="access_denied", state=ask.state)
    try:
        code = await signin.approve(plane, ask, form.get("user", ""), form.get("password", ""))
    except signin.BadSignIn as exc:
        return consent_page(ask, exc.message, 401)
    return redirect(ask.redirect_uri, code=code, state=ask.state)


# --- registration -----------------------------------------------------------------------------


class ClientCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    redirect_uris: list[AnyHttpUrl] = Field(default_factory=list, max_length=10)
    scopes: list[str] = Field(default_factory=lambda: list(signin.USER_SCOPES), min_length=1)
    hourly_quota: Annotated[int, Field(ge=1, le=100_000)] = 100
    token_lifetime_s: Annotated[int, Field(ge=60, le=86_400)] = 3600


@router.post(
    "/v1/admin/applications/{name}/clients",
    status_code=201,
    dependencies=[Depends(require_admin)],
    tags=["admin"],
)
async def register_client(name: str, body: ClientCreate, plane: PlaneDep) -> dict[str, Any]:
    """Register a Teaming sign-in client for an application: its id and secret (shown once)."""
    tenant = await plane.store.tenants.get_tenant(name)
    if tenant is None:
        raise not_found(f"application {name!r}")
    for scope in body.scopes:
        if scope not in signin.ALL_SCOPES:
            raise invalid("scopes", f"unknown scope {scope!r}")
    client, secret = await signin.register_client(
        plane,
        tenant,
        tuple(str(uri) for uri in body.redirect_uris),
        tuple(dict.fromkeys(body.scopes)),
        body.hourly_quota,
        body.token_lifetime_s,
    )
    return {
        "client_id": client.id,
        "client_secret": secret,
        "application": tenant.name,
        "redirect_uris": list(client.redirect_uris),
        "scopes": list(client.scopes),
        "hourly_quota": client.hourly_quota,
        "token_lifetime_s": client.token_lifetime_s,
    }
