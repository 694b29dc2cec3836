"""Issue 13's operator scenario on the full stack: 24 questions over two videos, the
navigate worker SIGKILLed while jobs run, the Redis db flushed (a Redis restart without
persistence), the worker started again. Postgres brings every job back: all succeed, none
runs twice to completion, no caption is computed twice.

Real Postgres, Redis and Celery worker processes; the models are the scripted server (a
fixed latency per call, so jobs are mid-run when the worker dies).
"""

from __future__ import annotations

import time
import uuid

import redis

from app.db.models import CaptionNode, Job
from tests.integration.recovery.conftest import FinishAudit
from tests.integration.workers.conftest import CAPTIONER_MODEL, Stack, make_video, wait_for
from tests.support.hostile_report import Tally

# Short leases so the test waits seconds, not minutes, for lost work to come back.
RECOVERY = {"lease_s": 2.0, "reconcile_interval_s": 0.5, "recover_max_attempts": 5}


def _commit_without_enqueue(stack: Stack, video_id: uuid.UUID, question: str) -> uuid.UUID:
    """A job whose enqueue failed after the commit (the API crashed between the two)."""
    with stack.sessions() as session:
        job = Job(tenant_id=stack.tenant_id, video_id=video_id, question=question)
        session.add(job)
        session.commit()
        return job.id


def _statuses(stack: Stack, job_ids: list[uuid.UUID]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for job_id in job_ids:
        status = stack.job(job_id).status
        counts[status] = counts.get(status, 0) + 1
    return counts


def test_sigkill_and_redis_flush_lose_no_job(make_stack, finish_audit: FinishAudit,
                                             tally: Tally) -> None:
    stack: Stack = make_stack(server_args=("--latency-ms", "120"), **RECOVERY)
    stack.start_worker("ingest,caption", concurrency=2, name="captions")
    navigator = stack.start_worker("navigate", concurrency=3, name="navigate")
    videos = [stack.upload(make_video(seconds), "eager") for seconds in (60, 90)]

    job_ids: list[uuid.UUID] = []
    for i in range(24):
        video_id = videos[i % 2]
        question = f"What happens around second {5 * i}?"
        if i in (5, 17):
            job_ids.append(_commit_without_enqueue(stack, video_id, question))
        else:
            job_ids.append(stack.ask(video_id, question))

    def some_running() -> bool:
        counts = _statuses(stack, job_ids)
        return counts.get("running", 0) >= 2 and counts.get("succeeded", 0) >= 1

    wait_for(some_running, timeout=90, interval=0.05, what="jobs running on the navigator")
    navigator.kill()
    redis.Redis.from_url(stack.settings.redis_url or "").flushdb()
    faults = 2
    before = _statuses(stack, job_ids)
    assert before.get("running", 0) + before.get("queued", 0) > 0
    time.sleep(0.5)
    stack.start_worker("navigate", concurrency=3, name="navigate-again")

    jobs = [stack.wait_job(job_id, timeout=90) for job_id in job_ids]

    assert [j.status for j in jobs] == ["succeeded"] * 24, stack.logs()
    finishes = finish_audit.counts()
    run_twice = sum(n - 1 for n in finishes.values() if n > 1)
    assert all(finishes[j] == 1 for j in job_ids) and run_twice == 0
    rows = []
    for video_id in videos:
        rows += stack.caption_rows(stack.video(video_id).sha256)
    keys = [(r.content_sha256, r.node_key) for r in rows]
    assert len(keys) == len(set(keys))
    captions_twice = stack.calls(CAPTIONER_MODEL) - stack.count_rows(CaptionNode)
    assert captions_twice == 0
    assert any(j.attempts > 1 or j.recoveries > 0 for j in jobs)  # recovery did happen
    tally.add("faults_process", faults)
    tally.add("jobs_lost", sum(j.status not in ("succeeded",) for j in jobs))
    tally.add("jobs_run_twice", run_twice)
    tally.add("captions_twice", captions_twice)
