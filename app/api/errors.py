"""One JSON error shape for every failure: ``{"error": {"code", "message", "details"}}``.

Domain errors (``VidnavError``) map their ``kind`` to a status; request-validation errors
and HTTP errors from the framework use the same shape, so clients parse one thing.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import psycopg
import redis
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.errors import ErrorKind, VidnavError
from app.services.ratelimit import RateLimited

logger = logging.getLogger(__name__)

STATUS_BY_KIND: dict[ErrorKind, int] = {
    "invalid": 400,
    "not_found": 404,
    "conflict": 409,
    "too_large": 413,
    "unsupported": 415,
    "unauthorized": 401,
    "forbidden": 403,
    "rate_limited": 429,
    "unavailable": 503,
    "insufficient_storage": 507,
    "internal": 500,
}


class ErrorBody(BaseModel):
    code: str = Field(description="Stable machine-readable error code", examples=["not_found"])
    message: str = Field(description="What went wrong, for people")
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorResponse(BaseModel):
    """The body of every error response."""

    error: ErrorBody


_DESCRIPTIONS = {
    400: "Invalid input",
    401: "Missing, invalid or revoked API key",
    403: "Refused (a dashboard form sent from another site)",
    404: "Not found (also for another tenant's ids)",
    409: "Conflict with the current state",
    413: "Upload too large or over the tenant's quota",
    415: "Unsupported media type",
    422: "Request validation failed",
    429: "Rate limit exceeded (see Retry-After)",
    500: "Internal error",
    503: "A dependency is unavailable",
    507: "The server's storage is full",
}

_RATE_HEADERS = {
    "RateLimit-Limit": {"schema": {"type": "integer"}, "description": "Requests per window"},
    "RateLimit-Remaining": {"schema": {"type": "integer"}, "description": "Left in window"},
    "RateLimit-Reset": {"schema": {"type": "integer"}, "description": "Seconds to reset"},
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries for these error statuses, all with the error shape."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {"model": ErrorResponse, "description": _DESCRIPTIONS[status]}
        if status == 429:
            entry["headers"] = {
                **_RATE_HEADERS,
                "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait"},
            }
        out[status] = entry
    return out


def error_json(status: int, code: str, message: str, details: dict[str, Any] | None = None,
               headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    return JSONResponse(jsonable_encoder(body), status_code=status, headers=headers)


def _http_code(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "http_error"


async def vidnav_error_response(request: Request, exc: Exception) -> JSONResponse:
    """The response for a domain error (the handler of ``VidnavError``)."""
    assert isinstance(exc, VidnavError)
    status = STATUS_BY_KIND.get(exc.kind, 500)
    headers: dict[str, str] = {}
    if isinstance(exc, RateLimited):
        headers = exc.decision.headers()
    elif status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if status >= 500:
        logger.error("%s on %s %s: %s", exc.code, request.method, request.url.path, exc.message)
    return error_json(status, exc.code, exc.message, exc.details, headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(err.get("loc", ())), "msg": str(err.get("msg", "")),
         "type": str(err.get("type", ""))}
        for err in exc.errors()
    ]
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(part) for part in first["loc"])
    return error_json(422, "validation_error", f"{where}: {first['msg']}" if where else
                      str(first["msg"]), {"errors": errors})


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else _DESCRIPTIONS.get(exc.status_code, "")
    return error_json(exc.status_code, _http_code(exc.status_code), detail or "error",
                      headers=dict(exc.headers or {}))


async def _dependency_down(request: Request, exc: Exception) -> JSONResponse:
    """Postgres or Redis unreachable or out of connections (a restart, a failover, a full
    ``max_connections``): a 503 the client may retry, not an internal error."""
    logger.error("dependency unavailable on %s %s: %s", request.method, request.url.path,
                 type(exc).__name__)
    return error_json(503, "dependency_unavailable",
                      "the service's database or queue is unavailable; try again shortly",
                      headers={"Retry-After": "1"})


# Connection-level failures of the stores a request needs (not errors in a query).
DEPENDENCY_ERRORS: tuple[type[Exception], ...] = (
    sqlalchemy.exc.OperationalError, psycopg.OperationalError, redis.ConnectionError,
    redis.TimeoutError)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_json(500, "internal_error", "an internal error occurred")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(VidnavError, vidnav_error_response)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for error in DEPENDENCY_ERRORS:
        app.add_exception_handler(error, _dependency_down)
    app.add_exception_handler(Exception, _unexpected)
