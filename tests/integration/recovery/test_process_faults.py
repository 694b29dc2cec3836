"""Process faults on the full stack (real Celery workers, Postgres, Redis; scripted models):
each worker kind killed mid-task, Redis restarted with and without its data, Postgres
restarted mid-job. After each, every job ends (succeeded), none twice to completion."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update

from app.db import migrate
from app.db.base import utcnow
from app.db.models import CaptionNode, Video
from app.settings import Settings
from tests.integration.recovery.conftest import FinishAudit
from tests.integration.workers.conftest import (
    CAPTIONER_MODEL,
    CeleryWorker,
    Stack,
    make_video,
    wait_for,
)
from tests.support.hostile_report import Tally
from tests.support.throwaway import ScratchPostgres, ScratchRedis, postgres_available

RECOVERY = {"lease_s": 2.0, "reconcile_interval_s": 0.5, "recover_max_attempts": 5}
SLOW_MODELS = ("--latency-ms", "120")


def _ask_many(stack: Stack, video_id: uuid.UUID, n: int) -> list[uuid.UUID]:
    return [stack.ask(video_id, f"What happens around second {3 * i}?") for i in range(n)]


def _wait_running(stack: Stack, job_ids: list[uuid.UUID]) -> None:
    def running() -> bool:
        return sum(stack.job(j).status == "running" for j in job_ids) >= 1

    wait_for(running, timeout=90, interval=0.05, what="a job running")


def _all_succeed_once(stack: Stack, job_ids: list[uuid.UUID], audit: FinishAudit,
                      tally: Tally) -> None:
    jobs = [stack.wait_job(j, timeout=90) for j in job_ids]
    assert [j.status for j in jobs] == ["succeeded"] * len(jobs), (
        [(j.status, j.error) for j in jobs], stack.logs())
    run_twice = audit.run_twice(job_ids)
    assert run_twice == 0
    tally.add("faults_process")
    tally.add("jobs_lost", 0)
    tally.add("jobs_run_twice", run_twice)


def _captions_once(stack: Stack, tally: Tally) -> None:
    twice = stack.calls(CAPTIONER_MODEL) - stack.count_rows(CaptionNode)
    assert twice == 0
    tally.add("captions_twice", twice)


def test_kill_9_of_the_caption_worker_mid_captioning(make_stack, finish_audit: FinishAudit,
                                                     tally: Tally) -> None:
    stack: Stack = make_stack(server_args=SLOW_MODELS, captioner_concurrency=2, **RECOVERY)
    captions = stack.start_worker("ingest,caption", concurrency=1, name="captions")
    stack.start_worker("navigate", concurrency=3, name="navigate")
    video_id = stack.upload(make_video(90), "eager")
    job_ids = _ask_many(stack, video_id, 6)

    def mid_captioning() -> bool:
        video = stack.video(video_id)
        return video.status == "captioning" and 0 < video.captions_done < video.captions_total

    wait_for(mid_captioning, timeout=60, interval=0.05, what="captioning under way")
    captions.kill()
    stack.start_worker("ingest,caption", concurrency=1, name="captions-again")

    _all_succeed_once(stack, job_ids, finish_audit, tally)
    video = stack.video(video_id)
    keys = [r.node_key for r in stack.caption_rows(video.sha256)]
    assert len(keys) == len(set(keys)) == video.captions_total  # each stored once
    # Only the calls in flight when the worker died were asked again (their captions were
    # never stored): at most the captioner's concurrency.
    assert stack.calls(CAPTIONER_MODEL) - len(keys) <= 2


def test_a_video_left_ingesting_by_a_killed_worker_is_ingested_again(
        make_stack, finish_audit: FinishAudit, tally: Tally) -> None:
    stack: Stack = make_stack(**RECOVERY)
    video_id = stack.add_video(make_video(60), "eager")
    # The row as a SIGKILLed ingest leaves it: claimed, its lease lapsed, no message.
    with stack.sessions() as session:
        session.execute(update(Video).where(Video.id == video_id).values(
            status="ingesting", attempts=1, lease_expires_at=utcnow() - timedelta(seconds=1)))
        session.commit()
    job_ids = _ask_many(stack, video_id, 2)
    stack.start_worker(concurrency=2, name="all")

    stack.wait_video(video_id, timeout=60)
    _all_succeed_once(stack, job_ids, finish_audit, tally)
    assert stack.video(video_id).recoveries >= 1
    _captions_once(stack, tally)


def test_kill_9_of_the_navigate_worker_mid_job(make_stack, finish_audit: FinishAudit,
                                               tally: Tally) -> None:
    stack: Stack = make_stack(server_args=SLOW_MODELS, **RECOVERY)
    stack.start_worker("ingest,caption", concurrency=1, name="captions")
    navigator = stack.start_worker("navigate", concurrency=2, name="navigate")
    video_id = stack.upload(make_video(60), "eager")
    job_ids = _ask_many(stack, video_id, 6)
    _wait_running(stack, job_ids)
    navigator.kill()  # no flush: Celery's own redelivery and the reconciler race; one wins
    stack.start_worker("navigate", concurrency=2, name="navigate-again")

    _all_succeed_once(stack, job_ids, finish_audit, tally)
    _captions_once(stack, tally)


def _supervise(stack: Stack, worker: CeleryWorker) -> None:
    """What the compose file's ``restart: unless-stopped`` does: a Celery worker that lost
    its broker either reconnects or (kombu, restoring its unacknowledged messages over the
    dead connection) exits with "Unrecoverable error"; then a new one is started."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if worker.process.poll() is not None:
            stack.start_worker(concurrency=3, name="all-restarted")
            return
        if worker.log().count("Connected to redis") >= 2:
            return
        time.sleep(0.1)


@pytest.fixture
def scratch_redis(tmp_path: Path) -> Iterator[ScratchRedis]:
    server = ScratchRedis(tmp_path / "redis-data")
    yield server
    server.stop()


@pytest.mark.parametrize("keep_data", [True, False], ids=["with-data", "without-data"])
def test_redis_restart_mid_job(make_stack, finish_audit: FinishAudit, tally: Tally,
                               scratch_redis: ScratchRedis, tmp_path: Path,
                               keep_data: bool) -> None:
    stack: Stack = make_stack(server_args=SLOW_MODELS, redis_url=scratch_redis.url,
                              **RECOVERY)
    worker = stack.start_worker(concurrency=3, name="all")
    video_id = stack.upload(make_video(60), "eager")
    job_ids = _ask_many(stack, video_id, 8)
    _wait_running(stack, job_ids)

    scratch_redis.stop()
    scratch_redis.start(tmp_path / ("redis-data" if keep_data else "redis-empty"))
    _supervise(stack, worker)

    _all_succeed_once(stack, job_ids, finish_audit, tally)
    _captions_once(stack, tally)


@pytest.fixture
def scratch_postgres() -> Iterator[ScratchPostgres]:
    if not postgres_available():
        pytest.skip("no Postgres server binaries to run a throwaway cluster")
    server = ScratchPostgres()
    migrate.upgrade(Settings(database_url=server.url))
    yield server
    server.close()


def test_postgres_restart_mid_job(make_stack, tally: Tally,
                                  scratch_postgres: ScratchPostgres) -> None:
    stack: Stack = make_stack(server_args=SLOW_MODELS, database_url=scratch_postgres.url,
                              **RECOVERY)
    audit = FinishAudit(stack.runtime.engine)
    stack.start_worker(concurrency=3, name="all")
    video_id = stack.upload(make_video(60), "eager")
    job_ids = _ask_many(stack, video_id, 8)
    _wait_running(stack, job_ids)

    scratch_postgres.stop()
    scratch_postgres.start()

    _all_succeed_once(stack, job_ids, audit, tally)
    _captions_once(stack, tally)




def test_the_api_answers_503_while_postgres_is_down_and_recovers(
        make_stack, tally: Tally, scratch_postgres: ScratchPostgres) -> None:
    from app.db.session import session_scope
    from app.services.tenants import create_tenant
    from tests.integration.workers.test_full_stack_http import ApiProcess

    stack: Stack = make_stack(database_url=scratch_postgres.url)
    with session_scope(stack.sessions) as session:
        _tenant, key = create_tenant(session, "pg-down")
    api = ApiProcess(stack)
    try:
        headers = {"Authorization": f"Bearer {key}"}
        assert httpx.get(f"{api.base_url}/v1/videos", headers=headers).status_code == 200
        scratch_postgres.stop()
        down = httpx.get(f"{api.base_url}/v1/videos", headers=headers, timeout=30)
        assert down.status_code == 503, down.text
        assert down.json()["error"]["code"] == "dependency_unavailable"
        assert down.headers["Retry-After"] == "1"
        scratch_postgres.start()
        wait_for(lambda: httpx.get(f"{api.base_url}/v1/videos", headers=headers,
                                   timeout=30).status_code == 200,
                 timeout=30, what="the API to serve again")
    finally:
        api.stop()
    tally.add("faults_process")
