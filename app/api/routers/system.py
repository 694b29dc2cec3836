"""Operational endpoints: liveness, readiness (database, Redis, model endpoints), metrics."""

from __future__ import annotations

import httpx
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from app.api.deps import State
from app.api.schemas import CheckResult, Health, Readiness
from app.services.runtime import Runtime

router = APIRouter(tags=["operations"])

READY_TIMEOUT_S = 2.0


@router.get("/healthz", response_model=Health, summary="The process is up")
async def healthz() -> Health:
    return Health(status="ok")


def _check_database(runtime: Runtime) -> CheckResult:
    try:
        with runtime.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return CheckResult(ok=True)
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        return CheckResult(ok=False, detail=f"{type(exc).__name__}: {exc}"[:500])


def _check_redis(runtime: Runtime) -> CheckResult:
    client = runtime.redis
    if client is None:
        return CheckResult(ok=True, detail="not configured (in-process queue and events)")
    try:
        client.ping()
        return CheckResult(ok=True)
    except Exception as exc:  # noqa: BLE001
        return CheckResult(ok=False, detail=f"{type(exc).__name__}: {exc}"[:500])


def _check_model(base_url: str | None) -> CheckResult:
    if not base_url:
        return CheckResult(ok=True, detail="served in-process (CPU profile)")
    try:
        response = httpx.get(base_url.rstrip("/") + "/models", timeout=READY_TIMEOUT_S)
        if response.status_code < 500:
            return CheckResult(ok=True, detail=f"HTTP {response.status_code}")
        return CheckResult(ok=False, detail=f"HTTP {response.status_code}")
    except httpx.HTTPError as exc:
        return CheckResult(ok=False, detail=f"{type(exc).__name__}: {exc}"[:500])


@router.get(
    "/readyz", response_model=Readiness, summary="Dependencies are reachable",
    responses={503: {"model": Readiness, "description": "A dependency is unavailable"}},
)
def readyz(state: State) -> Response:
    runtime = state.runtime
    settings = runtime.settings
    checks = {
        "database": _check_database(runtime),
        "redis": _check_redis(runtime),
        "policy": _check_model(settings.policy_base_url),
        "captioner": _check_model(settings.captioner_base_url),
        "video_qa": _check_model(settings.videoqa_base_url),
    }
    ready = all(c.ok for c in checks.values())
    body = Readiness(status="ready" if ready else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if ready else 503)


@router.get(
    "/metrics", summary="Prometheus metrics", response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
                     "description": "Prometheus text exposition format"}},
)
def metrics(state: State) -> Response:
    registry = state.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
