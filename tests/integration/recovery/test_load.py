"""Load through the full stack, reduced for CI (``bench/load.py`` runs the full numbers):
questions asked at once over several videos all complete, none lost or duplicated; then
pollers of job status on several API processes all get answers, and their p99 is recorded.
"""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from app.db.models import Job
from app.db.session import session_scope
from app.services.tenants import create_tenant
from tests.integration.recovery.conftest import FinishAudit
from tests.integration.workers.conftest import REPO_ROOT, Stack, make_video, wait_for
from tests.support.hostile_report import Tally
from tests.support.load import ApiServers, ask_concurrently, poll_concurrently, upload_videos

QUESTIONS, VIDEOS, POLLERS, API_PROCESSES = 40, 4, 100, 2


def test_concurrent_questions_and_pollers(make_stack, finish_audit: FinishAudit,
                                          tally: Tally) -> None:
    stack: Stack = make_stack(rate_limit_per_minute=10_000_000, lease_s=5.0,
                              reconcile_interval_s=1.0)
    stack.start_worker("ingest,caption", concurrency=2, name="captions")
    stack.start_worker("navigate", concurrency=4, name="navigate")
    with session_scope(stack.sessions) as session:
        _tenant, key = create_tenant(session, f"load-{uuid.uuid4().hex[:6]}")
    api = ApiServers(stack.env, REPO_ROOT, stack.tmp_path / "api.log", API_PROCESSES)
    try:
        videos = upload_videos(api.base_url, key,
                               [make_video(20 + i) for i in range(VIDEOS)])
        job_ids = ask_concurrently(api.base_url, key, videos, QUESTIONS)
        assert len(set(job_ids)) == QUESTIONS

        def finished() -> bool:
            with stack.sessions() as session:
                done = session.scalar(select(func.count()).select_from(Job).where(
                    Job.finished_at.is_not(None)))
            return done == QUESTIONS

        wait_for(finished, timeout=150, interval=0.5, what=f"{QUESTIONS} jobs to finish")
        polled = poll_concurrently(api.base_url, key, job_ids, POLLERS, duration_s=5,
                                   processes=2)
    finally:
        api.stop()

    jobs = [stack.job(uuid.UUID(j)) for j in job_ids]
    assert stack.count_rows(Job) == QUESTIONS  # none duplicated
    assert [j.status for j in jobs] == ["succeeded"] * QUESTIONS, stack.logs()
    assert finish_audit.run_twice([j.id for j in jobs]) == 0
    assert polled.errors == 0 and polled.requests > POLLERS
    tally.add("jobs_lost", 0)
    tally.add("jobs_run_twice", 0)
    tally.add("load_questions", QUESTIONS)
    tally.add("load_pollers_p99_ms", round(polled.p99_ms))
    print(f"\nload: {QUESTIONS} questions over {VIDEOS} videos; {POLLERS} pollers on "
          f"{API_PROCESSES} API processes: {polled.requests} reads, {polled.per_second:.0f}/s, "
          f"p50 {polled.p50_ms:.1f} ms, p99 {polled.p99_ms:.1f} ms")
