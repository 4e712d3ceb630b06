"""The Teaming sign-in (seed 002) with a real HTTP client against the running bridge: client
registration, the token endpoint's client-credentials and authorization-code grants (the
consent page read and submitted as a browser would), scopes enforced on the Teaming routes,
the hourly quota, expiry as 401 code 42, and every bad input of the endpoint and the page."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from control.runtime import Runtime
from control.usecases.signin import ADMIN_SCOPES, USER_SCOPES
from tests.integration.harness import ADMIN_TOKEN, FakeClock, loopback_config, with_control

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
TOKEN = "/openidconnect/b2b/v1/token"
AUTHORIZE = "/openidconnect/b2b/v1/authorize"
PROFILE = "/teaming/users/myTelephonyProfile"
CALLBACK = "http://127.0.0.1:9/signed-in"
CALLS, NOTIFY, CONFIG = USER_SCOPES
EXPIRED = {
    "code": 42,
    "message": "Expired credentials",
    "description": "The requested service needs credentials, and the ones provided were "
    "out-of-date.",
}


async def start(tmp_path: Path, clock: FakeClock | None = None) -> Runtime:
    return await Runtime(with_control(loopback_config(), tmp_path / "data"), clock).start()


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    running = await start(tmp_path)
    try:
        yield running
    finally:
        await running.stop()


def http(runtime: Runtime) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=runtime.base_url, timeout=15.0, trust_env=False)


async def application(client: httpx.AsyncClient, name: str) -> dict[str, Any]:
    reply = await client.post(f"/v1/admin/applications/{name}/tokens", headers=ADMIN)
    assert reply.status_code == 201, reply.text
    return dict(reply.json())


async def register(client: httpx.AsyncClient, name: str, **fields: Any) -> dict[str, Any]:
    body = {"redirect_uris": [CALLBACK], **fields}
    reply = await client.post(f"/v1/admin/applications/{name}/clients", json=body, headers=ADMIN)
    assert reply.status_code == 201, reply.text
    return dict(reply.json())


def basic(registered: dict[str, Any], secret: str | None = None) -> dict[str, str]:
    pair = f"{registered['client_id']}:{secret or registered['client_secret']}"
    return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}


async def client_token(
    client: httpx.AsyncClient, registered: dict[str, Any], scope: str | None = None
) -> httpx.Response:
    form = {"grant_type": "client_credentials"}
    if scope is not None:
        form["scope"] = scope
    return await client.post(TOKEN, data=form, headers=basic(registered))


def bearer(reply: httpx.Response) -> dict[str, str]:
    assert reply.status_code == 200, reply.text
    return {"Authorization": f"Bearer {reply.json()['access_token']}"}


def oauth_error(reply: httpx.Response, status: int, error: str, starts: str = "") -> None:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert set(body) == {"error", "error_description"} and body["error"] == error, body
    assert body["error_description"].startswith(starts), body
    assert reply.headers["Cache-Control"] == "no-store"


def teaming_error(reply: httpx.Response, status: int, code: int) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    body: dict[str, Any] = reply.json()
    assert set(body) == {"code", "message", "description"} and body["code"] == code, body
    return body


class Form(HTMLParser):
    """The consent page's form, read as a browser would: its action and its inputs."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.action = ""
        self.fields: dict[str, str] = {}
        self.buttons: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.action = named["action"]
        elif tag == "input":
            self.fields[named["name"]] = named.get("value", "")
        elif tag == "button":
            self.buttons.append(named["value"])


def redirected(reply: httpx.Response) -> dict[str, str]:
    assert reply.status_code == 302, reply.text
    target = urlsplit(reply.headers["location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == CALLBACK
    return {k: v[0] for k, v in parse_qs(target.query).items()}


async def consent(
    client: httpx.AsyncClient, query: dict[str, str], user: str, password: str, decision: str
) -> httpx.Response:
    page = await client.get(AUTHORIZE, params=query)
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    form = Form(page.text)
    assert form.action == AUTHORIZE and form.buttons == ["approve", "deny"]
    filled = {**form.fields, "user": user, "password": password, "decision": decision}
    return await client.post(form.action, data=filled)


# --- the grants -------------------------------------------------------------------------------


async def test_client_credentials_token_with_its_scopes(runtime: Runtime) -> None:
    async with http(runtime) as client:
        acme = await application(client, "acme")
        registered = await register(client, "acme")
        assert registered["scopes"] == list(USER_SCOPES)
        assert registered["hourly_quota"] == 100 and registered["token_lifetime_s"] == 3600

        reply = await client_token(client, registered)
        body = reply.json()
        assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
        assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
        assert body["scope"].split() == list(USER_SCOPES)
        assert reply.headers["Cache-Control"] == "no-store"
        full = bearer(reply)
        profile = await client.get(PROFILE, headers=full)
        assert profile.status_code == 200 and profile.json()["userId"] == acme["application_id"]
        calls = f"/teaming/users/{acme['application_id']}/calls"
        assert (await client.get(calls, headers=full)).status_code == 200

        # a token for call management only: the profile and subscriptions are refused
        narrow = bearer(await client_token(client, registered, CALLS))
        assert (await client.get(calls, headers=narrow)).status_code == 200
        denied = teaming_error(await client.get(PROFILE, headers=narrow), 403, 50)
        assert denied["message"] == "Access denied" and CONFIG in denied["description"]
        subscribe = {"callBackUrl": "http://127.0.0.1:9/h", "eventType": "Basic Call"}
        refused = await client.post(calls, json=subscribe, headers=narrow)
        assert NOTIFY in teaming_error(refused, 403, 50)["description"]
        listing = await client.get("/teaming/subscriptions", headers=narrow)
        teaming_error(listing, 403, 50)

        # form credentials work as well as Basic
        form = {
            "grant_type": "client_credentials",
            "client_id": registered["client_id"],
            "client_secret": registered["client_secret"],
            "scope": f"{NOTIFY} {CONFIG}",
        }
        notify = bearer(await client.post(TOKEN, data=form))
        assert (await client.post(calls, json=subscribe, headers=notify)).status_code == 201
        teaming_error(await client.get(calls, headers=notify), 403, 50)
        perform = {"calledNumber": "+33612345678"}  # performing a call is call management
        teaming_error(await client.post(calls, json=perform, headers=notify), 403, 50)

        # the application's plain API token keeps every user scope
        api = {"Authorization": f"Bearer {acme['token']}"}
        assert (await client.get(PROFILE, headers=api)).status_code == 200


async def test_authorization_code_grant_through_the_consent_page(runtime: Runtime) -> None:
    async with http(runtime) as client:
        await application(client, "acme")
        globex = await application(client, "globex")  # the user who signs in
        registered = await register(client, "acme")
        query = {
            "response_type": "code",
            "client_id": registered["client_id"],
            "redirect_uri": CALLBACK,
            "scope": f"{CALLS} {CONFIG}",
            "state": "xyz 1",
        }
        page = await client.get(AUTHORIZE, params=query)
        assert CALLS in page.text and CONFIG in page.text and NOTIFY not in page.text

        wrong = await consent(client, query, "globex", "cb_wrong", "approve")
        assert wrong.status_code == 401 and "wrong user or password" in wrong.text
        not_theirs = await consent(client, query, "acme", globex["token"], "approve")
        assert not_theirs.status_code == 401

        denied = redirected(await consent(client, query, "globex", globex["token"], "deny"))
        assert denied == {"error": "access_denied", "state": "xyz 1"}

        granted = redirected(await consent(client, query, "globex", globex["token"], "approve"))
        assert granted["state"] == "xyz 1" and set(granted) == {"code", "state"}
        exchange = {"grant_type": "authorization_code", "code": granted["code"]}
        exchange["redirect_uri"] = CALLBACK
        reply = await client.post(TOKEN, data=exchange, headers=basic(registered))
        assert reply.json()["scope"].split() == [CALLS, CONFIG]
        token = bearer(reply)
        profile = await client.get(PROFILE, headers=token)
        assert profile.json()["userId"] == globex["application_id"]  # acts as the user
        teaming_error(await client.get("/teaming/subscriptions", headers=token), 403, 50)

        again = await client.post(TOKEN, data=exchange, headers=basic(registered))
        oauth_error(again, 400, "invalid_grant", "code:")  # a code works once

        # a code is the client's own and bound to its redirect URI
        other = await register(client, "acme", redirect_uris=[CALLBACK, CALLBACK + "/2"])
        granted = redirected(await consent(client, query, "globex", globex["token"], "approve"))
        stolen = {**exchange, "code": granted["code"]}
        oauth_error(
            await client.post(TOKEN, data=stolen, headers=basic(other)), 400, "invalid_grant"
        )
        query2 = {**query, "client_id": other["client_id"], "redirect_uri": CALLBACK + "/2"}
        page = await client.get(AUTHORIZE, params=query2)
        form = {**Form(page.text).fields, "user": "globex", "password": globex["token"]}
        reply = await client.post(AUTHORIZE, data={**form, "decision": "approve"})
        assert reply.status_code == 302
        code = parse_qs(urlsplit(reply.headers["location"]).query)["code"][0]
        mismatch = {**exchange, "code": code, "redirect_uri": CALLBACK}
        oauth_error(
            await client.post(TOKEN, data=mismatch, headers=basic(other)),
            400,
            "invalid_grant",
            "redirect_uri:",
        )


async def test_expired_token_is_401_code_42_and_a_new_one_works(tmp_path: Path) -> None:
    clock = FakeClock()
    running = await start(tmp_path, clock)
    try:
        async with http(running) as client:
            acme = await application(client, "acme")
            registered = await register(client, "acme", token_lifetime_s=60)
            token = bearer(await client_token(client, registered))
            assert (await client.get(PROFILE, headers=token)).status_code == 200
            clock.advance(seconds=61)
            calls = f"/teaming/users/{acme['application_id']}/calls"
            for reply in (
                await client.get(PROFILE, headers=token),
                await client.get(calls, headers=token),
                await client.get("/teaming/subscriptions", headers=token),
            ):
                assert reply.status_code == 401 and reply.json() == EXPIRED, reply.text
                assert reply.headers["WWW-Authenticate"].startswith("Bearer")
            fresh = bearer(await client_token(client, registered))
            assert (await client.get(PROFILE, headers=fresh)).status_code == 200
    finally:
        await running.stop()


async def test_hourly_quota_per_client(tmp_path: Path) -> None:
    clock = FakeClock()
    running = await start(tmp_path, clock)
    try:
        async with http(running) as client:
            await application(client, "acme")
            registered = await register(client, "acme", hourly_quota=3)
            neighbour = await register(client, "acme", hourly_quota=3)
            for _ in range(3):
                bearer(await client_token(client, registered))
                clock.advance(minutes=10)
            over = await client_token(client, registered)
            oauth_error(over, 429, "access_denied", "hourly token quota of 3")
            assert int(over.headers["Retry-After"]) == 30 * 60  # the first is an hour old then
            bearer(await client_token(client, neighbour))  # quotas are per client
            clock.advance(minutes=30, seconds=1)
            bearer(await client_token(client, registered))
            oauth_error(await client_token(client, registered), 429, "access_denied")
    finally:
        await running.stop()


async def test_admin_scopes_reach_every_user(runtime: Runtime) -> None:
    async with http(runtime) as client:
        await application(client, "hq")
        branch = await application(client, "branch")
        admin = await register(client, "hq", scopes=[*USER_SCOPES, *ADMIN_SCOPES])
        user_only = await register(client, "hq")
        token = bearer(await client_token(client, admin, " ".join(ADMIN_SCOPES)))
        other = f"/teaming/users/{branch['application_id']}"
        profile = await client.get(f"{other}/telephonyProfile", headers=token)
        assert profile.status_code == 200 and profile.json()["firstName"] == "branch"
        assert (await client.get(f"{other}/calls", headers=token)).status_code == 200
        plain = bearer(await client_token(client, user_only))
        teaming_error(await client.get(f"{other}/calls", headers=plain), 404, 60)
        asked = await client_token(client, user_only, ADMIN_SCOPES[0])
        oauth_error(asked, 400, "invalid_scope", "scope:")


# --- bad input ----------------------------------------------------------------------------------


async def test_token_endpoint_bad_input(runtime: Runtime) -> None:
    async with http(runtime) as client:
        await application(client, "acme")
        registered = await register(client, "acme")
        auth = basic(registered)
        oauth_error(await client.post(TOKEN, data={}, headers=auth), 400, "invalid_request")
        oauth_error(
            await client.post(TOKEN, data={"grant_type": "password"}, headers=auth),
            400,
            "unsupported_grant_type",
        )
        grant = {"grant_type": "client_credentials"}
        wrong = await client.post(TOKEN, data=grant, headers=basic(registered, "nope"))
        oauth_error(wrong, 401, "invalid_client")
        assert wrong.headers["WWW-Authenticate"].startswith("Basic")
        oauth_error(await client.post(TOKEN, data=grant), 401, "invalid_client")
        garbled = {"Authorization": "Basic %%%"}
        oauth_error(await client.post(TOKEN, data=grant, headers=garbled), 401, "invalid_client")
        bearer_auth = {"Authorization": "Bearer x"}
        oauth_error(
            await client.post(TOKEN, data=grant, headers=bearer_auth), 401, "invalid_client"
        )
        unknown = await client_token(client, registered, "b2b:teaming:user:everything")
        oauth_error(unknown, 400, "invalid_scope", "scope: unknown scope")
        code = {"grant_type": "authorization_code", "redirect_uri": CALLBACK}
        oauth_error(await client.post(TOKEN, data=code, headers=auth), 400, "invalid_request")
        forged = {**code, "code": "forged"}
        oauth_error(await client.post(TOKEN, data=forged, headers=auth), 400, "invalid_grant")
        binary = await client.post(TOKEN, content=b"\xff\xfe", headers=auth)
        oauth_error(binary, 400, "invalid_request", "body:")
        assert (await client.get("/v1/health")).status_code == 200


async def test_authorization_page_bad_input(runtime: Runtime) -> None:
    async with http(runtime) as client:
        await application(client, "acme")
        registered = await register(client, "acme")
        good = {"response_type": "code", "client_id": registered["client_id"]}
        # never redirected: unknown client, unregistered redirect URI
        for query in (
            {**good, "client_id": "nope"},
            {**good, "redirect_uri": "http://127.0.0.1:9/elsewhere"},
        ):
            page = await client.get(AUTHORIZE, params=query)
            assert page.status_code == 400 and "Bad authorization request" in page.text
        # redirected to the client: bad response_type, bad scope
        implicit = redirected(
            await client.get(AUTHORIZE, params={**good, "response_type": "token"})
        )
        assert implicit["error"] == "unsupported_response_type"
        admin = await client.get(AUTHORIZE, params={**good, "scope": ADMIN_SCOPES[0], "state": "s"})
        assert redirected(admin)["error"] == "invalid_scope" and redirected(admin)["state"] == "s"
        # the sole registered redirect URI is the default; a forged post is checked again
        assert (await client.get(AUTHORIZE, params=good)).status_code == 200
        forged = {**good, "redirect_uri": "http://evil.invalid/", "decision": "approve"}
        assert (await client.post(AUTHORIZE, data=forged)).status_code == 400


@pytest.mark.parametrize(
    ("body", "starts"),
    [
        ({"scopes": ["b2b:teaming:user:everything"]}, "scopes:"),
        ({"scopes": []}, "scopes:"),
        ({"redirect_uris": ["not a url"]}, "redirect_uris"),
        ({"hourly_quota": 0}, "hourly_quota:"),
        ({"token_lifetime_s": 10}, "token_lifetime_s:"),
        ({"colour": "blue"}, "colour: unknown field"),
    ],
)
async def test_bad_client_registrations(
    runtime: Runtime, body: dict[str, Any], starts: str
) -> None:
    async with http(runtime) as client:
        await application(client, "acme")
        reply = await client.post("/v1/admin/applications/acme/clients", json=body, headers=ADMIN)
        assert reply.status_code == 400 and reply.json()["message"].startswith(starts), reply.text
        nobody = await client.post("/v1/admin/applications/nobody/clients", json={}, headers=ADMIN)
        assert nobody.status_code == 404
        no_admin = await client.post("/v1/admin/applications/acme/clients", json={})
        assert no_admin.status_code == 401
