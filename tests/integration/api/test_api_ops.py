"""Operational endpoints: liveness, readiness of each dependency, Prometheus metrics."""

from __future__ import annotations

import dataclasses
import socket
import uuid
from datetime import timedelta

from app.db.models import CaptionNode, Job, utcnow
from tests.integration.api.conftest import app_for, client_of, with_settings


async def test_healthz(client):
    response = await client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_readyz_checks_database_redis_and_models(client, runtime, scripted_server):
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    checks = ready.json()["checks"]
    assert checks["database"]["ok"] and checks["redis"]["ok"]
    assert checks["redis"]["detail"] is None  # really pinged, not "not configured"

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    changed = with_settings(runtime, policy_base_url=scripted_server.base_url,
                            captioner_base_url=dead)
    async with client_of(app_for(changed)) as other:
        down = await other.get("/readyz")
    assert down.status_code == 503
    body = down.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["policy"]["ok"] is True
    assert body["checks"]["captioner"]["ok"] is False


async def test_readyz_reports_a_down_redis(runtime):
    import redis

    down = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    try:
        async with client_of(app_for(dataclasses.replace(runtime, redis=down))) as client:
            response = await client.get("/readyz")
    finally:
        down.close()
    assert response.status_code == 503
    assert response.json()["checks"]["redis"]["ok"] is False


async def test_metrics_expose_requests_and_job_aggregates(client, tenant, small_video, runtime):
    video = (await client.post("/v1/videos", headers=tenant.headers,
                               files={"file": ("c.mp4", small_video, "video/mp4")})).json()
    job = (await client.post(f"/v1/videos/{video['id']}/questions", headers=tenant.headers,
                             json={"question": "q"})).json()
    await client.get(f"/v1/jobs/{job['id']}", headers=tenant.headers)
    await client.get(f"/v1/jobs/{uuid.uuid4()}", headers=tenant.headers)
    with runtime.session_factory() as session:
        row = session.get(Job, uuid.UUID(job["id"]))
        now = utcnow()
        row.status, row.started_at, row.finished_at = "succeeded", now - timedelta(seconds=12), now
        row.progress_round = 5
        row.summary = {"rounds": 5, "captions_generated": 1, "captions_cached": 3,
                       "roles": {"policy": {"calls": 5, "model_seconds": 2.5},
                                 "video_qa": {"calls": 1, "model_seconds": 4.0},
                                 "captioner": {"calls": 1, "model_seconds": 9.0}}}
        session.add(CaptionNode(content_sha256=video["sha256"], config_version="v",
                                node_key="1", level=1, first_frame=0, last_frame=9,
                                frame_times=[0.0], caption="c", model_seconds=1.5))
        session.commit()

    text = (await client.get("/metrics")).text
    lines = set(text.splitlines())
    assert 'vidnav_http_requests_total{method="GET",route="/v1/jobs/{job_id}",status="200"} 1.0' \
        in lines
    assert 'vidnav_http_requests_total{method="GET",route="/v1/jobs/{job_id}",status="404"} 1.0' \
        in lines
    assert 'vidnav_http_requests_total{method="POST",route="/v1/videos",status="201"} 1.0' in lines
    assert 'vidnav_jobs{status="succeeded"} 1.0' in lines
    assert 'vidnav_job_duration_seconds_count{status="succeeded"} 1.0' in lines
    [duration] = [x for x in lines
                  if x.startswith('vidnav_job_duration_seconds_sum{status="succeeded"}')]
    assert abs(float(duration.split()[-1]) - 12.0) < 0.01
    assert "vidnav_job_rounds_sum 5.0" in lines
    assert 'vidnav_model_latency_seconds_sum{role="policy"} 2.5' in lines
    assert 'vidnav_model_latency_seconds_count{role="video_qa"} 1.0' in lines
    assert 'vidnav_model_latency_seconds_sum{role="captioner"} 1.5' in lines
    assert "vidnav_caption_cache_hit_ratio 0.75" in lines


class _Cycle:
    def __init__(self) -> None:
        self.me = self


async def test_serving_leaves_start_up_objects_out_of_full_collections(runtime):
    import gc
    import weakref

    from app.api.app import create_app

    assert runtime.settings.gc_freeze  # the default
    app = create_app(runtime)
    before = gc.get_freeze_count()
    tracked = len(gc.get_objects())
    async with app.router.lifespan_context(app):
        # What was alive at start-up is frozen: most of the process's tracked objects.
        assert gc.get_freeze_count() - before > tracked // 2
        # Garbage made while serving is still collected.
        cycle = _Cycle()
        ref = weakref.ref(cycle)
        del cycle
        gc.collect()
        assert ref() is None
    assert gc.get_freeze_count() == before  # unfrozen on shutdown

    app = create_app(with_settings(runtime, gc_freeze=False))
    async with app.router.lifespan_context(app):
        assert gc.get_freeze_count() == before
