"""``GET /v1/jobs/{id}`` serves job bodies from memory only while Postgres says the row is
unchanged: writes from elsewhere (workers, SQL, cascades) arrive as NOTIFY and drop the
body; while the LISTEN connection is down nothing is cached."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import psycopg
import pytest
from sqlalchemy import update

from app.api.app import create_app
from app.bootstrap import build_runtime
from app.db.models import Job, utcnow


@pytest.fixture
async def job(client, tenant, video):
    response = await client.post(f"/v1/videos/{video['id']}/questions", headers=tenant.headers,
                                 json={"question": "What colour is the square?"})
    assert response.status_code == 202
    return response.json()


def reader(app):  # type: ignore[no-untyped-def]
    return app.state.api.job_reader


async def wait_until(predicate, timeout: float = 5.0) -> float:  # type: ignore[no-untyped-def]
    """Seconds until ``await predicate()`` is true; fails after ``timeout``."""
    started = time.monotonic()
    while not await predicate():
        if time.monotonic() - started > timeout:
            pytest.fail(f"condition not met within {timeout} s")
        await asyncio.sleep(0.005)
    return time.monotonic() - started


async def cache_live(app) -> bool:  # type: ignore[no-untyped-def]
    return bool(reader(app).cache_stats()["live"])


async def get(client, tenant, job_id):  # type: ignore[no-untyped-def]
    response = await client.get(f"/v1/jobs/{job_id}", headers=tenant.headers)
    return response.status_code, response.json()


async def test_repeated_reads_come_from_memory(app, client, tenant, job):
    await get(client, tenant, job["id"])  # starts the LISTEN connection on this loop
    await wait_until(lambda: cache_live(app))
    first = await get(client, tenant, job["id"])  # a miss that stores the body
    before = reader(app).cache_stats()
    again = [await get(client, tenant, job["id"]) for _ in range(5)]
    after = reader(app).cache_stats()
    assert first == (200, job)
    assert again == [first] * 5
    assert after["hits"] - before["hits"] == 5
    assert after["misses"] == before["misses"]


async def test_a_change_made_elsewhere_replaces_the_cached_body(app, client, tenant, job,
                                                               runtime):
    await get(client, tenant, job["id"])
    await wait_until(lambda: cache_live(app))
    await get(client, tenant, job["id"])
    assert (await get(client, tenant, job["id"]))[1]["status"] == "queued"
    # As a navigate worker would: its own session, its own commit.
    with runtime.session_factory() as session:
        session.execute(update(Job).where(Job.id == uuid.UUID(job["id"])).values(
            status="running", progress_round=3, started_at=utcnow()))
        session.commit()

    async def shows_running() -> bool:
        status, body = await get(client, tenant, job["id"])
        return status == 200 and body["status"] == "running" and body["rounds"] == 3

    assert await wait_until(shows_running, timeout=2.0) < 1.0
    # The new body is cached in turn.
    hits = reader(app).cache_stats()["hits"]
    assert (await get(client, tenant, job["id"]))[1]["rounds"] == 3
    assert reader(app).cache_stats()["hits"] == hits + 1


async def test_a_job_deleted_by_sql_is_not_found_from_memory(app, client, tenant, job,
                                                           pg_url):
    await get(client, tenant, job["id"])
    await wait_until(lambda: cache_live(app))
    await get(client, tenant, job["id"])
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DELETE FROM jobs WHERE id = %s", (uuid.UUID(job["id"]),))

    async def gone() -> bool:
        return (await get(client, tenant, job["id"]))[0] == 404

    await wait_until(gone, timeout=2.0)


async def test_own_cancel_and_delete_are_seen_at_once(app, client, tenant, video, job):
    await get(client, tenant, job["id"])
    await wait_until(lambda: cache_live(app))
    await get(client, tenant, job["id"])
    cancelled = await client.post(f"/v1/jobs/{job['id']}/cancel", headers=tenant.headers)
    assert cancelled.status_code == 200
    # No waiting: this process dropped the body itself when the cancel committed.
    assert await get(client, tenant, job["id"]) == (200, cancelled.json())
    await get(client, tenant, job["id"])  # cached again
    deleted = await client.delete(f"/v1/videos/{video['id']}", headers=tenant.headers)
    assert deleted.status_code == 204
    status, body = await get(client, tenant, job["id"])
    assert (status, body["error"]["code"]) == (404, "job_not_found")


async def test_another_tenant_never_gets_a_cached_body(app, client, tenant, other_tenant, job):
    await get(client, tenant, job["id"])
    await wait_until(lambda: cache_live(app))
    await get(client, tenant, job["id"])
    assert reader(app).cache_stats()["entries"] == 1
    status, body = await get(client, other_tenant, job["id"])
    assert (status, body["error"]["code"]) == (404, "job_not_found")


async def test_nothing_is_cached_while_notifications_are_down(app, client, tenant, job,
                                                               pg_url, runtime):
    await get(client, tenant, job["id"])
    await wait_until(lambda: cache_live(app))
    await get(client, tenant, job["id"])
    with psycopg.connect(pg_url, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE query = 'LISTEN vidnav_job_changed' AND pid <> pg_backend_pid()"
        ).fetchall()
    assert killed == [(True,)]
    await wait_until(lambda: _not(cache_live(app)), timeout=2.0)
    assert reader(app).cache_stats()["entries"] == 0
    # A change while nobody listens is read from Postgres, not from a stale entry.
    with runtime.session_factory() as session:
        session.execute(update(Job).where(Job.id == uuid.UUID(job["id"])).values(
            status="running", progress_round=1))
        session.commit()
    if not await cache_live(app):
        assert (await get(client, tenant, job["id"]))[1]["rounds"] == 1
    # The listener comes back by itself and caching resumes.
    await wait_until(lambda: cache_live(app), timeout=5.0)
    await get(client, tenant, job["id"])
    hits = reader(app).cache_stats()["hits"]
    assert (await get(client, tenant, job["id"]))[1]["rounds"] == 1
    assert reader(app).cache_stats()["hits"] == hits + 1


async def _not(awaitable) -> bool:  # type: ignore[no-untyped-def]
    return not await awaitable


async def test_a_read_overtaken_by_a_change_is_not_stored(app, client, tenant, job):
    await get(client, tenant, job["id"])
    await wait_until(lambda: cache_live(app))
    bodies = next(iter(reader(app)._bodies.values()))
    job_id, tenant_id = uuid.UUID(job["id"]), tenant.id
    mark = bodies.mark()
    bodies.forget(job_id)  # a notification arrives while the row is being read
    bodies.put(tenant_id, job_id, b"old", mark)
    assert bodies.get(tenant_id, job_id) is None
    mark = bodies.mark()
    bodies.forget(uuid.uuid4())  # another job's change does not matter
    bodies.put(tenant_id, job_id, b"new", mark)
    assert bodies.get(tenant_id, job_id) == b"new"
    mark = bodies.mark()
    bodies.reset()  # the connection dropped meanwhile: nothing read before it is kept
    bodies.put(tenant_id, job_id, b"newer", mark)
    assert bodies.get(tenant_id, job_id) is None


async def test_the_cache_can_be_turned_off(integration_settings, queue, tenant, job):
    settings = integration_settings.model_copy(update={"job_read_cache": False})
    runtime = build_runtime(settings, queue=queue)
    try:
        app = create_app(runtime, auth_cache_ttl_s=0.0)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://vidnav.test", timeout=60) as client:
            for _ in range(3):
                assert await get(client, tenant, job["id"]) == (200, job)
        assert reader(app).cache_stats() == {"hits": 0, "misses": 0, "entries": 0,
                                             "live": False}
    finally:
        runtime.close()
