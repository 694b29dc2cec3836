"""``GET /v1/jobs/{id}`` served beneath FastAPI's router: the request dashboards poll.

FastAPI spends more CPU on a request than the job read itself does: exception middleware,
route matching through included routers, and solving the route's parameters (even with no
dependencies) came to about a third of the API process's CPU per job read in bench/api.py.
This middleware answers the one request shape worth the shortcut and hands everything else
down unchanged:

- ``GET`` only, on ``/v1/jobs/`` followed by a canonical UUID (8-4-4-4-12 hex digits) and
  nothing else. Any other spelling (no hyphens, braces, a trailing slash, a bad id) goes to
  the FastAPI route, so validation errors and redirects are FastAPI's own.
- The body comes from ``job_body``, the function the FastAPI route calls, and domain errors
  (401, 404, 429, 503) are rendered by the app's handler for them; anything else propagates
  to the outermost error middleware exactly as it would from the route.
- ``scope["route"]`` is the documented route, so request metrics count it under its template,
  and the rate-limit headers are added by the metrics middleware outside this one.

The route stays declared (OpenAPI, and the fallback for every other spelling); a test
checks that both paths answer every case alike.
"""

from __future__ import annotations

import re
import uuid

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.errors import vidnav_error_response
from app.api.routers.jobs import get_job, job_body
from app.api.routers.jobs import router as jobs_router
from app.errors import VidnavError

PREFIX = "/v1/jobs/"
_CANONICAL_UUID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _job_route() -> APIRoute:
    for route in jobs_router.routes:
        if isinstance(route, APIRoute) and route.endpoint is get_job:
            return route
    raise LookupError("the jobs router has no GET /v1/jobs/{job_id}")


def _route_path(scope: Scope) -> str:
    """The path the router matches: ``path`` less ``root_path`` (as Starlette routes it)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root):len(root) + 1] == "/":
        return path[len(root):]
    return path


class JobReadFastPath:
    """Serves ``GET /v1/jobs/{canonical uuid}``; passes every other request to ``app``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.route = _job_route()

    def job_id(self, scope: Scope) -> uuid.UUID | None:
        if scope["type"] != "http" or scope["method"] != "GET":
            return None
        path = _route_path(scope)
        if not path.startswith(PREFIX) or not _CANONICAL_UUID.fullmatch(path, len(PREFIX)):
            return None
        return uuid.UUID(path[len(PREFIX):])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        job_id = self.job_id(scope)
        if job_id is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route
        request = Request(scope, receive)
        response: Response
        try:
            response = Response(await job_body(request, job_id), media_type="application/json")
        except VidnavError as exc:
            response = await vidnav_error_response(request, exc)
        await response(scope, receive, send)
