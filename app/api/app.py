"""The FastAPI application: ``create_app()`` wires routers, errors, metrics and the runtime."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from app.api.deps import ApiState
from app.api.errors import install_error_handlers
from app.api.fastpath import JobReadFastPath
from app.api.middleware import RequestBodyLimit, RequestMetricsMiddleware
from app.api.routers import jobs, media, system, ui, videos
from app.db.repositories import AsyncJobReader
from app.errors import exit_with
from app.services.auth import Authenticator
from app.services.metrics import HttpMetrics, JobMetricsCollector
from app.services.ratelimit import RateLimiter, UploadReservations
from app.services.runtime import Runtime
from app.settings import Settings, SettingsError, get_settings

API_VERSION = "1.0.0"
# The largest JSON body a route takes (a question with 26 options of 1000 characters is
# under 40 KB); routes with files set their own in ``RequestBodyLimit``'s table.
JSON_BODY_LIMIT_BYTES = 256 * 1024
DESCRIPTION = """Ask questions about long videos. Upload a video, post questions, and follow
each job as the navigator reads the video's caption tree (LongVideo-R1).

Authenticate with `Authorization: Bearer <api key>`. Every error has the same JSON shape:
`{"error": {"code", "message", "details"}}`."""


OPENAPI_TAGS = [
    {"name": "videos", "description": "Upload, list, read and delete videos; subtitles; "
                                      "questions"},
    {"name": "jobs", "description": "Follow, cancel and explain questions"},
    {"name": "operations", "description": "Health, readiness and metrics"},
]


def api_state(runtime: Runtime, registry: CollectorRegistry, *, auth_cache_ttl_s: float,
              sse_heartbeat_s: float, sse_poll_s: float) -> ApiState:
    """What the routes need beyond the runtime (the asyncio job reader on Postgres only)."""
    registry.register(JobMetricsCollector(runtime.session_factory))
    settings = runtime.settings
    url = settings.database_url
    reader = (AsyncJobReader(url, cache=settings.job_read_cache)
              if url and url.startswith("postgresql") else None)
    return ApiState(
        runtime=runtime, job_reader=reader,
        authenticator=Authenticator(runtime.session_factory, ttl_s=auth_cache_ttl_s),
        limiter=RateLimiter(runtime.redis, url=settings.redis_url),
        uploads=UploadReservations(runtime.redis), registry=registry,
        sse_heartbeat_s=sse_heartbeat_s, sse_poll_s=sse_poll_s,
    )


async def close_loop_resources(app: FastAPI) -> None:
    """Close what the app's state opened on the serving event loop."""
    state: ApiState = app.state.api
    await state.limiter.aclose()
    if state.job_reader is not None:
        await state.job_reader.aclose()


@contextmanager
def startup_objects_frozen(enabled: bool) -> Iterator[None]:
    """While serving, leave the objects that exist after start-up out of cyclic garbage
    collection (``gc.freeze``); undone on shutdown.

    A full collection walks every tracked object. After the imports that is some 150,000
    (FastAPI, pydantic, SQLAlchemy, the routes' models), about 80 ms of a busy core during
    which the event loop serves nobody. Requests in flight survive young collections, so
    under load full collections come every few seconds: they were the whole p99 tail of
    ``GET /v1/jobs/{id}`` in bench/api.py. Frozen objects are still freed by reference
    counting; only cycles among them wait for the unfreeze.
    """
    if not enabled:
        yield
        return
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def environment_settings() -> Settings:
    """The environment's settings for an app served without a runtime; bad ones end the
    process with one ``error [invalid_setting] ...`` line and exit code 2, as the CLI does
    (this is the ASGI factory's entry point: ``uvicorn --factory app.api.app:create_app``)."""
    try:
        return get_settings()
    except SettingsError as exc:
        exit_with(exc)


def create_app(
    runtime: Runtime | None = None, *, sse_heartbeat_s: float = 15.0, sse_poll_s: float = 1.0,
    auth_cache_ttl_s: float = 5.0, job_read_fast_path: bool = True,
) -> FastAPI:
    """The API app. Without ``runtime``, the lifespan builds one from the environment's
    settings (read now, so bad ones stop the process before it serves) and closes it on
    shutdown; a given runtime stays the caller's to close. ``job_read_fast_path=False``
    serves ``GET /v1/jobs/{id}`` through FastAPI's router only (see ``app.api.fastpath``;
    tests compare the two)."""
    registry = CollectorRegistry()
    http_metrics = HttpMetrics(registry)
    settings = runtime.settings if runtime is not None else environment_settings()

    def attach(app: FastAPI, rt: Runtime) -> None:
        app.state.api = api_state(rt, registry, auth_cache_ttl_s=auth_cache_ttl_s,
                                  sse_heartbeat_s=sse_heartbeat_s, sse_poll_s=sse_poll_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if runtime is not None:
            try:
                with startup_objects_frozen(runtime.settings.gc_freeze):
                    yield
            finally:
                await close_loop_resources(app)
            return
        from app.bootstrap import open_runtime

        with open_runtime(settings, reconcile=True) as built:
            attach(app, built)
            try:
                with startup_objects_frozen(settings.gc_freeze):
                    yield
            finally:
                await close_loop_resources(app)

    app = FastAPI(title="vidnav", version=API_VERSION, description=DESCRIPTION,
                  lifespan=lifespan, openapi_tags=OPENAPI_TAGS)
    if runtime is not None:
        attach(app, runtime)
    install_error_handlers(app)
    if job_read_fast_path:
        app.add_middleware(JobReadFastPath)  # inside the metrics middleware (added last)
    app.add_middleware(RequestBodyLimit, default_bytes=JSON_BODY_LIMIT_BYTES,
                       limits=videos.BODY_LIMITS)
    app.add_middleware(RequestMetricsMiddleware, metrics=http_metrics)
    # Routes are matched in order: jobs first, as ``GET /v1/jobs/{id}`` is what dashboards
    # poll (no path of one router can match another's, so the order changes nothing else).
    app.include_router(jobs.router)
    app.include_router(videos.router)
    app.include_router(system.router)
    app.include_router(media.router)
    for router in (ui.pages_router, ui.data_router, ui.root_router):  # the dashboard
        app.include_router(router)
    return app
