"""Errors as the API returns them: `{code, message, description}` with the right status, and a
message that names the offending field."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from control.usecases.errors import (
    Conflict,
    DomainError,
    Expired,
    Invalid,
    LimitExceeded,
    NotFound,
    Unauthorized,
    Unavailable,
)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, description: str = "") -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.description = status, code, message, description


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def invalid(field: str, problem: str) -> ApiError:
    return ApiError(400, "invalid_field", f"{field}: {problem}", f"The field {field!r} is invalid.")


def from_domain(error: DomainError) -> ApiError:
    """A use case's refusal as the native API answers it."""
    match error:
        case Invalid(field=field, problem=problem):
            return invalid(field, problem)
        case NotFound():
            return ApiError(404, "not_found", error.message)
        case Conflict():
            return ApiError(409, "conflict", error.message)
        case LimitExceeded():
            return ApiError(429, "concurrent_call_limit", error.message)
        case Unavailable():
            return ApiError(503, "unavailable", error.message)
        case Expired():
            return ApiError(
                401,
                "expired_credentials",
                "Expired credentials",
                "The token has expired: ask for a new one.",
            )
        case Unauthorized():
            return ApiError(401, "unauthorized", error.message)
    return ApiError(500, "error", error.message)


def body(code: str, message: str, description: str = "") -> dict[str, str]:
    return {"code": code, "message": message, "description": description or message}


def _field(location: tuple[Any, ...]) -> str:
    parts = [str(p) for p in location if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(body(exc.code, exc.message, exc.description), status_code=exc.status)

    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> JSONResponse:
        return await api_error(request, from_domain(exc))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors():
            field = _field(tuple(error.get("loc", ())))
            if error.get("type") == "json_invalid":
                problems.append(f"body: not valid JSON ({error.get('ctx', {}).get('error', '')})")
            elif error.get("type") == "extra_forbidden":
                problems.append(f"{field}: unknown field")
            else:
                problems.append(f"{field}: {error.get('msg', 'invalid')}")
        message = "; ".join(problems) or "invalid request"
        return JSONResponse(
            body("invalid_field", message, "The request has invalid or unknown fields."),
            status_code=400,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code, "error"
        )
        return JSONResponse(
            body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )
