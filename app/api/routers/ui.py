"""The dashboard under ``/ui``: jobs, videos and job pages, the key form, the question form,
and the JSON, live events, video bytes and thumbnails the pages load (cookie auth, see
``app.api.ui_auth``). Not part of the documented API: the same services, other clothes.

Pages answer errors with pages (a key form without a key, not found for another tenant's
ids); the data routes answer them in the API's JSON error shape.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import ValidationError

from app.api.deps import State, UoW, authenticate_key, read_only
from app.api.errors import STATUS_BY_KIND
from app.api.routers.jobs import event_stream
from app.api.routers.media import export_response, sprite_file, thumbnail_layout, video_file
from app.api.schemas import Budgets, QuestionCreate
from app.api.ui_auth import (
    MAX_KEY_LENGTH,
    check_form,
    check_same_origin,
    clear_key_cookie,
    cookie_key,
    cookie_tenant,
    csrf_token,
    safe_next,
    set_key_cookie,
)
from app.db.models import FINISHED_JOB_STATUSES, JOB_STATUSES
from app.errors import InvalidInput, VidnavError
from app.services import dashboard, jobs
from app.services.auth import TenantContext, Unauthorized
from app.services.jobs import QuestionInput
from app.services.ratelimit import RateLimited
from app.web import pages

PAGE_HEADERS = {
    "Content-Security-Policy": pages.PAGE_CSP, "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY", "Cache-Control": "no-store",
}
NOT_FOUND = {
    "job_not_found": ("Job not found", "There is no such job for your API key."),
    "video_not_found": ("Video not found", "There is no such video for your API key."),
}


TITLES = {403: "Refused", 404: "Not found", 409: "Conflict", 429: "Too many requests"}


def _html(page: str, status: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
    return HTMLResponse(page, status_code=status, headers=headers)


def error_page(request: Request, exc: Exception) -> Response:
    """The page for an error raised while making a page."""
    if isinstance(exc, RequestValidationError):
        if request.method == "GET":  # only path and query parameters: a malformed id
            return _html(pages.message_page("Not found", "There is no such page."), 404)
        return _html(pages.message_page("Bad input", "The form was incomplete."), 400)
    if not isinstance(exc, VidnavError):
        raise exc
    if isinstance(exc, Unauthorized):
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if request.method == "GET" and request.headers.get("sec-fetch-site") == "cross-site":
            return _html(pages.reload_page(here))
        message = None if exc.code == "missing_api_key" else (
            "The saved API key is not valid any more; enter a current one.")
        response = _html(pages.key_page(safe_next(here), message), 401)
        if cookie_key(request) is not None:
            clear_key_cookie(response, request)
        return response
    status = STATUS_BY_KIND.get(exc.kind, 500)
    title, message = NOT_FOUND.get(exc.code, (TITLES.get(status, "Bad input"), exc.message))
    if status >= 500:
        title = "Unavailable"
    headers = exc.decision.headers() if isinstance(exc, RateLimited) else None
    return _html(pages.message_page(title, message), status, headers)


class PageRoute(APIRoute):
    """A page route: errors become pages, and every answer gets the page headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                response = await handler(request)
            except Exception as exc:  # noqa: BLE001 - error_page re-raises what is not ours
                response = error_page(request, exc)
            for name, value in PAGE_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return page_handler


pages_router = APIRouter(prefix="/ui", route_class=PageRoute, include_in_schema=False)
data_router = APIRouter(prefix="/ui", include_in_schema=False)
root_router = APIRouter(include_in_schema=False)
CookieAuth = Annotated[tuple[TenantContext, str], Depends(cookie_tenant)]


@root_router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/ui/jobs", status_code=303)


# --- signing in and out ----------------------------------------------------------------


@pages_router.get("")
async def home() -> RedirectResponse:
    return RedirectResponse("/ui/jobs", status_code=303)


@pages_router.get("/login")
async def login_form(request: Request, next: str = "/ui/jobs") -> Response:  # noqa: A002
    key = cookie_key(request)
    if key is not None:
        try:
            await authenticate_key(request, key)
            return RedirectResponse(safe_next(next), status_code=303)
        except Unauthorized:
            pass
    return _html(pages.key_page(safe_next(next)))


@pages_router.post("/login")
async def login(request: Request, key: Annotated[str, Form(max_length=1000)] = "",
                next: Annotated[str, Form(max_length=2000)] = "/ui/jobs",  # noqa: A002
                ) -> Response:
    check_same_origin(request)
    key = key.strip()
    if not key or len(key) > MAX_KEY_LENGTH:
        return _html(pages.key_page(safe_next(next), "Enter an API key."), 401)
    try:
        await authenticate_key(request, key)
    except Unauthorized:
        return _html(pages.key_page(safe_next(next), "That key is not valid (or was revoked)."),
                     401)
    response = RedirectResponse(safe_next(next), status_code=303)
    set_key_cookie(response, request, key)
    return response


@pages_router.post("/logout")
async def logout(request: Request, csrf: Annotated[str, Form(max_length=200)] = "") -> Response:
    key = cookie_key(request)
    if key is not None:
        check_form(request, key, csrf)
    response = RedirectResponse("/ui/login", status_code=303)
    clear_key_cookie(response, request)
    return response


# --- pages ------------------------------------------------------------------------------


def _filters(status: str | None, video_id: uuid.UUID | None,
             cursor: str | None = None) -> dict[str, Any]:
    if status and status not in JOB_STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(JOB_STATUSES)}",
                           code="invalid_status")
    return {"status": status or None, "video_id": str(video_id) if video_id else None,
            "cursor": cursor or None}


@pages_router.get("/jobs")
async def jobs_page(auth: CookieAuth, state: State, status: str | None = None,
                    video_id: uuid.UUID | None = None,
                    cursor: Annotated[str | None, Query(max_length=200)] = None) -> Response:
    tenant, key = auth
    filters = _filters(status, video_id, cursor)
    data = await read_only(state, lambda s: {
        "filters": filters, "videos": dashboard.videos_overview(s, tenant.tenant_id),
        **dashboard.jobs_overview(s, tenant.tenant_id, status=filters["status"],
                                  video_id=video_id, cursor=filters["cursor"])})
    return _html(pages.app_page("jobs", "Jobs", data, tenant=tenant.name, csrf=csrf_token(key)))


@pages_router.get("/videos")
async def videos_page(auth: CookieAuth, state: State) -> Response:
    tenant, key = auth
    data = await read_only(state, lambda s: {
        "videos": dashboard.videos_overview(s, tenant.tenant_id)})
    return _html(pages.app_page("videos", "Videos", data, tenant=tenant.name,
                                csrf=csrf_token(key)))


def _media(video_id: str) -> dict[str, str]:
    return {"video": f"/ui/videos/{video_id}/content",
            "thumbnails": f"/ui/videos/{video_id}/thumbnails"}


@pages_router.get("/videos/{video_id}")
async def video_page(video_id: uuid.UUID, auth: CookieAuth, state: State) -> Response:
    tenant, key = auth
    data = await read_only(state, lambda s: dashboard.video_view(
        s, tenant.tenant_id, video_id, state.runtime.tree_config))
    data["media"] = _media(str(video_id))
    csrf = csrf_token(key)
    return _html(pages.app_page("video", data["video"]["name"], data, tenant=tenant.name,
                                csrf=csrf, extra_html=pages.ask_form(str(video_id), csrf)))


@pages_router.post("/videos/{video_id}/questions")
def ask_question(
    request: Request, video_id: uuid.UUID, auth: CookieAuth, uow: UoW, state: State,
    question: Annotated[str, Form(max_length=4000)] = "",
    options: Annotated[str, Form(max_length=30_000)] = "",
    max_rounds: Annotated[str, Form(max_length=10)] = "",
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """The video page's form: the same question as ``POST /v1/videos/{id}/questions``."""
    tenant, key = auth
    check_form(request, key, csrf)
    lines = [line.strip() for line in options.splitlines() if line.strip()]
    try:
        body = QuestionCreate(
            question=question, options=lines or None,
            budgets=Budgets(max_rounds=int(max_rounds)) if max_rounds.strip() else None)
    except (ValidationError, ValueError) as exc:
        raise InvalidInput(_form_error(exc), code="invalid_question") from None
    runtime = state.runtime
    job, created = jobs.create_job(
        uow.session, tenant.tenant_id, video_id,
        QuestionInput(question=body.question, options=tuple(lines) if lines else None,
                      budgets=body.budgets.model_dump(exclude_none=True)
                      if body.budgets else None),
        runtime.settings)
    job_id = job.id
    uow.after_commit(lambda: runtime.queue.enqueue_navigate(job_id))
    return RedirectResponse(f"/ui/jobs/{job_id}", status_code=303)


def _form_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError) and exc.errors():
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return f"{where}: {first.get('msg', 'invalid')}"
    return "max_rounds: give a whole number from 1 to 200"


@pages_router.get("/jobs/{job_id}")
async def job_page(job_id: uuid.UUID, auth: CookieAuth, state: State) -> Response:
    tenant, key = auth
    data = await read_only(state, lambda s: dashboard.job_view(
        s, tenant.tenant_id, job_id, state.runtime.tree_config))
    data["media"] = _media(data["video"]["id"])
    data["events"] = f"/ui/jobs/{job_id}/events"
    csrf = csrf_token(key)
    unfinished = data["job"]["status"] not in FINISHED_JOB_STATUSES
    return _html(pages.app_page("job", "Job", data, tenant=tenant.name, csrf=csrf,
                                extra_html=pages.cancel_form(str(job_id), csrf)
                                if unfinished else ""))


@pages_router.post("/jobs/{job_id}/cancel")
def cancel_job(request: Request, job_id: uuid.UUID, auth: CookieAuth, uow: UoW,
               csrf: Annotated[str, Form(max_length=200)] = "") -> Response:
    """The job page's cancel button: the same as ``POST /v1/jobs/{id}/cancel``."""
    tenant, key = auth
    check_form(request, key, csrf)
    jobs.cancel_job(uow.session, tenant.tenant_id, job_id)
    return RedirectResponse(f"/ui/jobs/{job_id}", status_code=303)


@pages_router.get("/jobs/{job_id}/export")
def export_page(job_id: uuid.UUID, auth: CookieAuth, uow: UoW, state: State) -> Response:
    tenant, _ = auth
    return export_response(state, uow.session, tenant.tenant_id, job_id)


# --- what the pages load -----------------------------------------------------------------


@data_router.get("/static/{name}")
async def static_asset(name: str) -> Response:
    if name not in pages.ASSET_TYPES:
        raise VidnavError("no such file", code="not_found", kind="not_found")
    return Response(pages.asset(name), media_type=pages.ASSET_TYPES[name],
                    headers={"Cache-Control": "public, max-age=300",
                             "X-Content-Type-Options": "nosniff"})


@data_router.get("/api/jobs")
async def jobs_data(auth: CookieAuth, state: State, status: str | None = None,
                    video_id: uuid.UUID | None = None,
                    cursor: Annotated[str | None, Query(max_length=200)] = None) -> JSONResponse:
    tenant, _ = auth
    filters = _filters(status, video_id, cursor)
    return JSONResponse(await read_only(state, lambda s: dashboard.jobs_overview(
        s, tenant.tenant_id, status=filters["status"], video_id=video_id,
        cursor=filters["cursor"])))


@data_router.get("/api/videos")
async def videos_data(auth: CookieAuth, state: State) -> JSONResponse:
    tenant, _ = auth
    return JSONResponse(await read_only(state, lambda s: {
        "videos": dashboard.videos_overview(s, tenant.tenant_id)}))


@data_router.get("/api/videos/{video_id}")
async def video_data(video_id: uuid.UUID, auth: CookieAuth, state: State) -> JSONResponse:
    tenant, _ = auth
    return JSONResponse(await read_only(state, lambda s: dashboard.video_view(
        s, tenant.tenant_id, video_id, state.runtime.tree_config)))


@data_router.get("/api/jobs/{job_id}")
async def job_data(job_id: uuid.UUID, auth: CookieAuth, state: State) -> JSONResponse:
    tenant, _ = auth
    return JSONResponse(await read_only(state, lambda s: dashboard.job_view(
        s, tenant.tenant_id, job_id, state.runtime.tree_config)))


@data_router.get("/jobs/{job_id}/events")
def job_event_stream(
    job_id: uuid.UUID, auth: CookieAuth, uow: UoW, state: State,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
) -> StreamingResponse:
    """``GET /v1/jobs/{id}/events`` for the job page."""
    jobs.get_job(uow.session, auth[0].tenant_id, job_id)
    return event_stream(state, auth[0].tenant_id, job_id, last_event_id)


@data_router.get("/videos/{video_id}/content")
def video_content(video_id: uuid.UUID, auth: CookieAuth, state: State) -> Response:
    return video_file(state, auth[0].tenant_id, video_id)


@data_router.get("/videos/{video_id}/thumbnails")
def thumbnails(video_id: uuid.UUID, auth: CookieAuth, state: State) -> dict[str, Any]:
    return thumbnail_layout(state, auth[0].tenant_id, video_id,
                            f"/ui/videos/{video_id}/thumbnails.jpg")


@data_router.get("/videos/{video_id}/thumbnails.jpg")
def thumbnail_sprite(video_id: uuid.UUID, auth: CookieAuth, state: State) -> Response:
    return sprite_file(state, auth[0].tenant_id, video_id)
