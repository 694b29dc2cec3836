"""Domain errors: a stable ``code`` and a ``kind``; no HTTP here (``app.api.errors`` maps kinds)."""

from __future__ import annotations

from typing import Any, Literal

ErrorKind = Literal[
    "invalid",  # the input is wrong: 400/422
    "not_found",  # 404 (also for another tenant's ids)
    "conflict",  # 409
    "too_large",  # 413
    "unsupported",  # 415
    "unauthorized",  # 401
    "rate_limited",  # 429
    "unavailable",  # a dependency is down: 503
    "internal",  # 500
]


class VidnavError(Exception):
    """Base of every error vidnav reports to a user."""

    code: str = "error"
    kind: ErrorKind = "internal"

    def __init__(
        self, message: str, *, code: str | None = None, kind: ErrorKind | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if kind is not None:
            self.kind = kind
        self.details = details or {}


class NotFound(VidnavError):
    code = "not_found"
    kind = "not_found"


class InvalidInput(VidnavError):
    code = "invalid_input"
    kind = "invalid"


class Conflict(VidnavError):
    code = "conflict"
    kind = "conflict"


class Unavailable(VidnavError):
    code = "unavailable"
    kind = "unavailable"


class ModelError(VidnavError):
    """A model endpoint failed: down, timed out, or answered something unusable.

    Codes: ``model_unavailable``, ``model_timeout``, ``model_bad_response``,
    ``model_rejected`` (the server refused the request itself, a 4xx other than 429).
    """

    code = "model_unavailable"
    kind = "unavailable"
