"""The FastAPI application: native /v1 routes, errors as {code, message, description},
OpenAPI at /openapi.json and docs at /docs, Prometheus at /metrics."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response

from control.api import (
    admin,
    announcements,
    calls,
    conferences,
    errors,
    recordings,
    rooms,
    subscriptions,
)
from control.api.dialects import (
    aculab,
    hoiio,
    hoiio_voice,
    orange,
    teaming,
    teaming_services,
    teaming_signin,
    teaming_voicemail,
)
from control.api.guard import FailureLimiter, HttpGuard
from control.api.metrics import Metrics
from control.plane import ControlPlane


def create_app(plane: ControlPlane, metrics: Metrics) -> FastAPI:
    app = FastAPI(
        title="confbridge control API",
        version="1",
        description="Conferences, participants, subscriptions and live events of the bridge.",
    )
    app.state.plane = plane
    errors.install(app)
    app.include_router(conferences.router)
    app.include_router(subscriptions.router)
    app.include_router(admin.router)
    app.include_router(rooms.router)
    app.include_router(calls.router)
    app.include_router(recordings.router)
    app.include_router(announcements.router)
    # the seed documents' APIs (issue 6), the Teaming sign-in (issue 16)
    dialects = (
        aculab, hoiio, hoiio_voice, orange,
        teaming, teaming_services, teaming_signin, teaming_voicemail,
    )  # fmt: skip
    for dialect in dialects:
        app.include_router(dialect.router)

    control = plane.config.control
    limiter = FailureLimiter(
        control.auth_failure_limit, control.auth_failure_window_s, control.auth_block_s
    )
    uploads = {"/v1/announcements/": plane.config.announcements.max_upload_mb * 1024 * 1024}
    app.add_middleware(
        HttpGuard, max_body_bytes=control.max_body_bytes, limiter=limiter, larger=uploads
    )

    @app.middleware("http")
    async def count_requests(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        metrics.api_requests.labels(request.method, str(response.status_code)).inc()
        return response

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/health", tags=["health"])
    async def health() -> dict[str, object]:
        return {"status": "ok", "conferences": len(plane.conferences)}

    return app
