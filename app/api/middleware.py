"""ASGI middleware: request metrics by route template, rate-limit headers on responses, and
a cap on request bodies."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import error_json
from app.services.metrics import HttpMetrics


class RequestMetricsMiddleware:
    """Counts and times every HTTP request; adds the tenant's RateLimit-* headers."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                state: dict[str, Any] = scope.get("state") or {}
                extra = state.get("rate_limit_headers")
                if extra:
                    present = {k.lower() for k, _ in message.get("headers", [])}
                    headers = list(message.get("headers", []))
                    headers += [(k.lower().encode(), v.encode()) for k, v in extra.items()
                                if k.lower().encode() not in present]
                    message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.observe(scope["method"], template, status,
                                 time.perf_counter() - started)


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class RequestBodyLimit:
    """Refuses request bodies over a per-route size with 413 before the app reads them all.

    FastAPI reads and parses a route's declared body (JSON, a form) before any dependency
    runs, so before the API key is checked: without a cap, anyone could make a process
    buffer any amount. ``limits`` holds ``(method, path regex, bytes)`` checked in order,
    bytes None for a route that streams and limits its body itself; other requests get
    ``default_bytes``. A declared Content-Length over the limit is refused unread; a longer
    stream is cut off where it passes the limit, and the app's answer is replaced by the 413.
    """

    def __init__(self, app: ASGIApp, *, default_bytes: int,
                 limits: Sequence[tuple[str, re.Pattern[str], int | None]] = ()) -> None:
        self.app = app
        self.default_bytes = default_bytes
        self.limits = tuple(limits)

    def limit_for(self, method: str, path: str) -> int | None:
        for route_method, pattern, limit in self.limits:
            if method == route_method and pattern.fullmatch(path):
                return limit
        return self.default_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # No route reads the body of other methods (the polled job read stays untouched).
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["method"], scope["path"])
        if limit is None:
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, receive, send, limit)
            return
        received = 0
        exceeded = False
        answered = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # The app sees the client go away, and reads nothing more.
                    exceeded = True
                    return {"type": "http.disconnect"}
            return message

        async def checked_send(message: Message) -> None:
            nonlocal answered
            if exceeded:
                if message["type"] == "http.response.start" and not answered:
                    answered = True
                    await self._refuse(scope, receive, send, limit)
                return
            answered = answered or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, limited_receive, checked_send)
        if exceeded and not answered:
            await self._refuse(scope, receive, send, limit)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = error_json(413, "request_too_large",
                              f"the request body exceeds the limit of {limit} bytes for "
                              f"{scope['method']} {scope['path']}", {"limit_bytes": limit},
                              headers={"Connection": "close"})
        await response(scope, receive, send)
