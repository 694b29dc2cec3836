"""Domain errors: a stable ``code`` and a ``kind``; no HTTP here (``app.api.errors`` maps kinds)."""

from __future__ import annotations

import sys
from typing import Any, Literal, NoReturn

ErrorKind = Literal[
    "invalid",  # the input is wrong: 400/422
    "not_found",  # 404 (also for another tenant's ids)
    "conflict",  # 409
    "too_large",  # 413
    "unsupported",  # 415
    "unauthorized",  # 401
    "forbidden",  # 403: authenticated, but the request is refused (a cross-site form)
    "rate_limited",  # 429
    "unavailable",  # a dependency is down: 503
    "insufficient_storage",  # the server's disk is full: 507
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


class InsufficientStorage(VidnavError):
    """The server has no room left to store what was sent (its disk is full)."""

    code = "insufficient_storage"
    kind = "insufficient_storage"


class ModelError(VidnavError):
    """A model endpoint failed: down, timed out, or answered something unusable.

    Codes: ``model_unavailable``, ``model_timeout``, ``model_bad_response``,
    ``model_rejected`` (the server refused the request itself, a 4xx other than 429).
    """

    code = "model_unavailable"
    kind = "unavailable"


# Kinds that are the user's to fix: a command exits with 2 for them, 1 for the others.
USER_ERROR_KINDS: frozenset[ErrorKind] = frozenset(
    {"invalid", "not_found", "conflict", "too_large", "unsupported"})


def exit_code(exc: VidnavError) -> int:
    """A command's exit code for ``exc``: 2 bad input, 1 a dependency failed."""
    return 2 if exc.kind in USER_ERROR_KINDS else 1


def error_line(exc: VidnavError) -> str:
    """The one line a command prints for ``exc`` (on stderr)."""
    return f"error [{exc.code}] {exc.message}"


def exit_with(exc: VidnavError) -> NoReturn:
    """End a process that cannot start (an entry point outside the CLI: the Celery worker
    app, the ASGI factory) the way the CLI does: one line on stderr, exit code 2 or 1."""
    print(error_line(exc), file=sys.stderr, flush=True)
    raise SystemExit(exit_code(exc))
