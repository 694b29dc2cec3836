"""Access: every route refuses a missing, wrong or revoked key; another tenant's ids are not
found (exactly like ids that do not exist) and their data stays as it was; keys never reach
logs, responses, rows or Redis; rate limits hold under a burst spread over two API
processes; metrics carry no tenant data."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, text

from app.api.app import create_app
from app.db.models import ApiKey, Job, Subtitle, TraceStep, Video, WebhookDelivery, utcnow
from app.services.runtime import Runtime

PUBLIC = {"/healthz", "/readyz", "/metrics"}
SRT = b"1\n00:00:00,500 --> 00:00:01,500\nHello there.\n"
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # the template, e.g. /v1/videos/{video_id}

    def request(self, ids: dict[str, str], small_video: bytes) -> dict[str, Any]:
        """Method, URL and a body the route would accept."""
        url = self.path.format(**ids)
        kwargs: dict[str, Any] = {"method": self.method, "url": url}
        if self.method == "POST" and url == "/v1/videos":
            kwargs["files"] = {"file": ("clip.mp4", small_video, "video/mp4")}
        elif self.path.endswith("/subtitles") and self.method == "POST":
            kwargs["files"] = {"file": ("a.srt", SRT)}
        elif self.path.endswith("/questions"):
            kwargs["json"] = {"question": "What is shown?"}
        return kwargs


def endpoints(app: FastAPI) -> list[Endpoint]:
    """Every operation the API declares (its OpenAPI document), one entry per method."""
    found = [Endpoint(method.upper(), path) for path, item in app.openapi()["paths"].items()
             for method in sorted(item)]
    assert len(found) >= 14
    return found


@pytest.fixture
def owned(client_sync, tenant, small_video, runtime: Runtime) -> dict[str, str]:
    """The tenant's video (with subtitles) and a finished job with a round and a webhook
    delivery: something behind every id-taking route."""
    video = client_sync.post("/v1/videos", headers=tenant.headers,
                             files={"file": ("clip.mp4", small_video, "video/mp4")}).json()
    assert client_sync.post(f"/v1/videos/{video['id']}/subtitles", headers=tenant.headers,
                            files={"file": ("a.srt", SRT)}).status_code == 201
    job = client_sync.post(f"/v1/videos/{video['id']}/questions", headers=tenant.headers,
                           json={"question": "What is shown?",
                                 "callback_url": "https://hooks.example.com/x"}).json()
    with runtime.session_factory() as session:
        row = session.get(Job, uuid.UUID(job["id"]))
        assert row is not None
        row.status, row.answer, row.started_at, row.finished_at = (
            "succeeded", "a test card", utcnow(), utcnow())
        session.add(TraceStep(job_id=row.id, round_index=0, kind="answer", payload={"index": 0}))
        session.add(WebhookDelivery(job_id=row.id, url="https://hooks.example.com/x",
                                    event="job.finished", state="delivered"))
        session.commit()
    return {"video_id": video["id"], "job_id": job["id"]}


@pytest.fixture
def client_sync(app: FastAPI) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    with TestClient(app) as http:
        yield http


def footprint(runtime: Runtime) -> tuple[Any, ...]:
    """Every tenant-visible row, to tell that a refused request changed nothing."""
    with runtime.session_factory() as session:
        videos = session.execute(select(Video.id, Video.status, Video.updated_at)).all()
        jobs = session.execute(select(Job.id, Job.status, Job.cancel_requested)).all()
        counts = [session.scalar(select(func.count()).select_from(m))
                  for m in (Subtitle, TraceStep, WebhookDelivery)]
    return tuple(sorted(map(tuple, videos))), tuple(sorted(map(tuple, jobs))), tuple(counts)


def test_every_route_refuses_missing_wrong_and_revoked_keys(app, client_sync, tenant, owned,
                                                            small_video, runtime, tally) -> None:
    key = tenant.key
    with runtime.session_factory() as session:
        revoked_key = session.scalars(select(ApiKey).where(ApiKey.tenant_id == tenant.id)).one()
        from app.services.tenants import create_api_key

        _, live_key = create_api_key(session, tenant.id, "second")
        revoked_key.revoked_at = utcnow()
        session.commit()
    bad_headers = {
        "no key": {},
        "empty bearer": {"Authorization": "Bearer "},
        "basic scheme": {"Authorization": f"Basic {key}"},
        "wrong key": {"Authorization": "Bearer vn_" + "A" * 43},
        "key with a byte changed": {"Authorization": f"Bearer {live_key[:-1]}"
                                    + ("B" if live_key[-1] != "B" else "C")},
        "revoked key": {"Authorization": f"Bearer {key}"},
        "key as a query parameter": {},  # ?api_key= is not a way in
        "huge header": {"Authorization": "Bearer " + "x" * 20_000},
    }
    before = footprint(runtime)
    checked = 0
    for endpoint in endpoints(app):
        if endpoint.path in PUBLIC:
            continue
        assert endpoint.path.startswith("/v1/"), endpoint
        for label, headers in bad_headers.items():
            kwargs = endpoint.request(owned, small_video)
            if label == "key as a query parameter":
                kwargs["params"] = {"api_key": live_key, "key": live_key}
            response = client_sync.request(**kwargs, headers=headers)
            tally.add("auth_refused")
            tally.add("auth_let_through", int(response.status_code < 400))
            assert response.status_code == 401, (label, endpoint, response.text[:200])
            assert response.headers["WWW-Authenticate"] == "Bearer"
            error = response.json()["error"]
            assert error["code"] in ("missing_api_key", "invalid_authorization",
                                     "invalid_api_key"), error
            assert key not in response.text and live_key not in response.text
            checked += 1
    private = [e for e in endpoints(app) if e.path not in PUBLIC]
    assert len(private) >= 13 and checked == len(bad_headers) * len(private)
    assert footprint(runtime) == before
    uploads = runtime.settings.data_dir / "uploads"
    assert not uploads.exists() or not any(uploads.iterdir())
    # The tenant's other key still works, and only the public routes need none.
    assert client_sync.get("/v1/jobs", headers={"Authorization": f"Bearer {live_key}"}
                           ).status_code == 200
    public = {e.path for e in endpoints(app) if e.path in PUBLIC}
    assert public == PUBLIC


def test_another_tenants_ids_are_not_found_and_change_nothing(app, client_sync, tenant,
                                                              other_tenant, owned, small_video,
                                                              runtime, tally) -> None:
    """Tenant B with tenant A's ids gets what it gets for ids that do not exist."""
    before = footprint(runtime)
    nobody = {"video_id": str(uuid.uuid4()), "job_id": str(uuid.uuid4())}
    tried = 0
    for endpoint in endpoints(app):
        if not ("{video_id}" in endpoint.path or "{job_id}" in endpoint.path):
            continue
        theirs = client_sync.request(**endpoint.request(owned, small_video),
                                     headers=other_tenant.headers)
        missing = client_sync.request(**endpoint.request(nobody, small_video),
                                      headers=other_tenant.headers)
        tally.add("cross_tenant_tried")
        tally.add("cross_tenant_succeeded", int(theirs.status_code < 400))
        assert theirs.status_code == missing.status_code == 404, (endpoint, theirs.text)
        assert theirs.json()["error"]["code"] == missing.json()["error"]["code"]
        assert set(theirs.json()["error"]) == {"code", "message", "details"}
        tried += 1
    assert tried >= 9
    # Lists and filters show B nothing of A's, and B's own idempotency key is its own.
    for url in ("/v1/videos", "/v1/jobs", f"/v1/jobs?video_id={owned['video_id']}",
                f"/v1/jobs?video_id={owned['video_id']}&status=succeeded"):
        listed = client_sync.get(url, headers=other_tenant.headers)
        tally.add("cross_tenant_tried")
        tally.add("cross_tenant_succeeded", len(listed.json()["items"]))
        assert listed.status_code == 200 and listed.json()["items"] == [], url
    assert footprint(runtime) == before
    # A still has everything, unchanged.
    mine = client_sync.get(f"/v1/jobs/{owned['job_id']}", headers=tenant.headers)
    assert mine.status_code == 200 and mine.json()["status"] == "succeeded"
    assert not mine.json()["cancel_requested"]


async def test_keys_never_reach_logs_responses_rows_or_redis(
    runtime: Runtime, client, tenant, other_tenant, owned, redis_client, tally,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    keys = [tenant.key, other_tenant.key]
    seen: list[str] = []
    for headers in (tenant.headers, other_tenant.headers,
                    {"Authorization": f"Bearer {tenant.key}x"},
                    {"Authorization": f"Basic {tenant.key}"}):
        for url in ("/v1/jobs", f"/v1/jobs/{owned['job_id']}",
                    f"/v1/jobs/{owned['job_id']}/trace", f"/v1/videos/{owned['video_id']}",
                    "/v1/nope", "/metrics", "/readyz"):
            response = await client.get(url, headers=headers)
            seen.append(response.text + str(response.headers))
        response = await client.post(f"/v1/videos/{owned['video_id']}/questions",
                                     headers=headers, json={"question": "q" * 5000})
        seen.append(response.text + str(response.headers))
    with runtime.session_factory() as session:
        tables = session.execute(text(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )).scalars().all()
        for table in tables:
            seen += [str(row) for row in session.execute(text(f'SELECT * FROM "{table}"'))]
    for redis_key in redis_client.scan_iter("*"):
        seen.append(redis_key.decode(errors="replace"))
        if redis_client.type(redis_key) == b"string":
            seen.append((redis_client.get(redis_key) or b"").decode(errors="replace"))
    seen.append(caplog.text)
    # The whole key, or its secret part past the stored 12-character prefix.
    leaks = [key for key in keys for blob in seen if key in blob or key[12:] in blob]
    tally.add("keys_logged", len(leaks))
    assert not leaks


async def test_rate_limits_hold_under_a_burst_over_two_api_processes(
    runtime: Runtime, make_tenant, tenant, owned, tally,
) -> None:
    """Two API apps (separate limiters, one Redis) serve a concurrent burst for one tenant:
    together they never serve more than its limit, and other tenants are not held up."""
    limit = 40
    burst = 160
    busy = make_tenant("bursty", rate_limit_per_minute=limit)
    apps = [create_app(runtime, auth_cache_ttl_s=5.0) for _ in range(2)]
    clients = [httpx.AsyncClient(transport=httpx.ASGITransport(app=a),
                                 base_url="http://vidnav.test", timeout=60) for a in apps]
    # One fixed window: start well inside it.
    while 60 - time.time() % 60 < 15:
        await asyncio.sleep(1)
    urls = ["/v1/jobs", "/v1/videos", f"/v1/jobs/{uuid.uuid4()}"]
    try:
        responses = await asyncio.gather(*(
            clients[i % 2].get(urls[i % 3], headers=busy.headers) for i in range(burst)))
        others = await asyncio.gather(*(c.get("/v1/jobs", headers=tenant.headers)
                                        for c in clients))
    finally:
        for c in clients:
            await c.aclose()
    served = [r for r in responses if r.status_code != 429]
    limited = [r for r in responses if r.status_code == 429]
    tally.add("burst_requests", burst)
    tally.add("burst_over_limit", max(0, len(served) - limit))
    assert len(served) == limit, [r.status_code for r in responses]
    assert all(r.status_code in (200, 404) for r in served)
    for response in limited:
        assert response.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(response.headers["Retry-After"]) <= 60
        assert response.headers["RateLimit-Remaining"] == "0"
    assert [r.status_code for r in others] == [200, 200]


async def test_metrics_carry_no_tenant_data(client, tenant, other_tenant, owned, runtime,
                                            small_video, tally) -> None:
    marker_name = "holiday-in-secret-place.mp4"
    uploaded = await client.post("/v1/videos", headers=other_tenant.headers,
                                 files={"file": (marker_name, small_video, "video/mp4")})
    question = "Where is the secret bunker of ACME?"
    asked = await client.post(f"/v1/videos/{uploaded.json()['id']}/questions",
                              headers=other_tenant.headers, json={"question": question})
    assert asked.status_code == 202
    for url in (f"/v1/videos/{owned['video_id']}/nope", f"/v1/jobs/{owned['job_id']}",
                f"/v1/jobs/{uuid.uuid4()}", "/v1/videos?limit=3"):
        await client.get(url, headers=tenant.headers)
    metrics = (await client.get("/metrics")).text
    assert "vidnav_http_requests" in metrics and "vidnav_jobs" in metrics
    with runtime.session_factory() as session:
        names = session.scalars(text("SELECT name FROM tenants")).all()
        shas = session.scalars(select(Video.sha256)).all()
    secrets = [tenant.key, other_tenant.key, str(tenant.id), str(other_tenant.id), *names,
               *shas, marker_name, question, owned["video_id"], owned["job_id"]]
    found = [s for s in secrets if s in metrics] + UUID_RE.findall(metrics)
    tally.add("metrics_tenant_data", len(found))
    assert not found, found
    labels = set(re.findall(r"(\w+)=\"", metrics))
    assert labels <= {"method", "route", "status", "role", "cached", "le", "quantile"}, labels
