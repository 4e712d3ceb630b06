"""HTTP hardening in front of every route (a pure ASGI middleware, so the route's context sees
what it sets): request bodies over `control.max_body_bytes` get 413 before they are read whole,
and a source address with too many failed authentications (any API's: bearer, Basic, Hoiio's
access_token, Orange's id) in a window gets 429 with Retry-After for a while. The counting is
`FailureLimiter`, sans-I/O; the clock is read here, in the glue."""

from __future__ import annotations

import json
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from control.usecases.auth import AuthAttempt, attempt

Scope = dict[str, Any]
MAX_SOURCES = 65_536


@dataclass
class FailureLimiter:
    """Per source: `limit` failures within `window_s` block it for `block_s`."""

    limit: int
    window_s: float
    block_s: float
    blocked_total: int = 0
    _failures: OrderedDict[str, deque[float]] = field(default_factory=OrderedDict)
    _blocked: dict[str, float] = field(default_factory=dict)

    def blocked_for(self, source: str, now: float) -> float:
        """Seconds the source stays blocked (0: it is not)."""
        until = self._blocked.get(source, 0.0)
        if until <= now:
            self._blocked.pop(source, None)
            return 0.0
        return until - now

    def failed(self, source: str, now: float) -> None:
        times = self._failures.get(source)
        if times is None:
            if len(self._failures) >= MAX_SOURCES:
                self._failures.popitem(last=False)
            times = self._failures[source] = deque()
        self._failures.move_to_end(source)
        times.append(now)
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if len(times) >= self.limit:
            if len(self._blocked) >= MAX_SOURCES:
                self._blocked = {s: u for s, u in self._blocked.items() if u > now}
            self._blocked[source] = now + self.block_s
            self.blocked_total += 1
            del self._failures[source]


class HttpGuard:
    def __init__(
        self,
        app: Any,
        max_body_bytes: int,
        limiter: FailureLimiter,
        larger: dict[str, int] | None = None,
    ) -> None:
        """`larger`: path prefixes whose bodies may be bigger (announcement uploads)."""
        self.app, self.max_body_bytes, self.limiter = app, max_body_bytes, limiter
        self.larger = larger or {}

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        source = (scope.get("client") or ("", 0))[0]
        wait = self.limiter.blocked_for(source, time.monotonic())
        if wait:
            message = "too many failed authentications from this address"
            await answer(send, 429, "too_many_requests", message, {"Retry-After": f"{wait:.0f}"})
            return
        path = scope.get("path", "")
        limit = next((n for p, n in self.larger.items() if path.startswith(p)), self.max_body_bytes)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await self.too_large(send, limit)
            return
        note = AuthAttempt()
        token = attempt.set(note)
        answered = False  # a 413 went out: whatever the route says next is dropped

        async def counted_receive() -> Any:
            nonlocal answered
            message = await receive()
            if message["type"] == "http.request" and not answered:
                note.body_bytes += len(message.get("body", b""))
                if note.body_bytes > limit:
                    answered = True
                    await self.too_large(send, limit)
                    return {"type": "http.disconnect"}  # the route stops reading
            return message

        async def guarded_send(message: Any) -> None:
            if not answered:
                await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not answered:
                raise
        finally:
            attempt.reset(token)
            if note.failed:
                self.limiter.failed(source, time.monotonic())

    async def too_large(self, send: Any, limit: int) -> None:
        message = f"body: at most {limit} bytes"
        await answer(send, 413, "payload_too_large", message)


async def answer(
    send: Any, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> None:
    body = json.dumps({"code": code, "message": message, "description": ""}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
