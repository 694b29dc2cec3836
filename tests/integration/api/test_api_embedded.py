"""The same API on the embedded default: SQLite (migrated by Alembic) and no Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from app.api.app import create_app
from app.bootstrap import build_runtime
from app.db import migrate
from app.services.tenants import create_tenant
from app.settings import Settings


@pytest.fixture
async def embedded(tmp_path: Path, queue) -> AsyncIterator[tuple[httpx.AsyncClient, dict]]:  # type: ignore[no-untyped-def]
    settings = Settings(data_dir=tmp_path / "embedded", rate_limit_per_minute=9)
    migrate.upgrade(settings)
    runtime = build_runtime(settings, queue=queue)
    assert runtime.redis is None
    with runtime.session_factory() as session:
        _, key = create_tenant(session, "solo")
        session.commit()
    app = create_app(runtime, sse_poll_s=0.1)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://embedded.test") as client:
            yield client, {"Authorization": f"Bearer {key}"}
    finally:
        runtime.close()


async def test_embedded_api_round_trip(embedded, small_video, queue):  # type: ignore[no-untyped-def]
    client, headers = embedded
    first = await client.post("/v1/videos", headers=headers,
                              files={"file": ("c.mp4", small_video, "video/mp4")})
    again = await client.post("/v1/videos", headers=headers,
                              files={"file": ("c.mp4", small_video, "video/mp4")})
    assert (first.status_code, again.status_code) == (201, 200)
    video_id = first.json()["id"]
    ask = {"question": "What is it?"}
    job = await client.post(f"/v1/videos/{video_id}/questions",
                            headers={**headers, "Idempotency-Key": "a"}, json=ask)
    retry = await client.post(f"/v1/videos/{video_id}/questions",
                              headers={**headers, "Idempotency-Key": "a"}, json=ask)
    assert (job.status_code, retry.status_code) == (202, 200)
    assert retry.json()["id"] == job.json()["id"]
    cancelled = await client.post(f"/v1/jobs/{job.json()['id']}/cancel", headers=headers)
    assert cancelled.json()["status"] == "cancelled"
    # Cursor pages work on SQLite's naive timestamps too.
    other = await client.post(f"/v1/videos/{video_id}/questions", headers=headers,
                              json={"question": "And then?"})
    page1 = (await client.get("/v1/jobs?limit=1", headers=headers)).json()
    page2 = (await client.get(f"/v1/jobs?limit=1&cursor={page1['next_cursor']}",
                              headers=headers)).json()
    assert [j["id"] for j in page1["items"] + page2["items"]] == [other.json()["id"],
                                                                  job.json()["id"]]
    assert page2["next_cursor"] is None
    # Read back through the thread-pool path (no asyncio Postgres reader on SQLite).
    fetched = await client.get(f"/v1/jobs/{job.json()['id']}", headers=headers)
    assert fetched.json() == cancelled.json()
    # Nine requests so far: the in-memory rate limiter refuses the tenth.
    limited = await client.get("/v1/jobs", headers=headers)
    assert limited.status_code == 429
    assert [c[0] for c in queue.calls] == ["ingest", "navigate", "navigate"]
    metrics = await client.get("/metrics")
    assert 'vidnav_jobs{status="cancelled"} 1.0' in metrics.text
