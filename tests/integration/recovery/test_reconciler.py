"""The reconciler on real Postgres: which unfinished rows it sends again, which it fails,
which it leaves to their owner, and that one pass runs at a time."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
from sqlalchemy.orm import Session, sessionmaker

from app.bootstrap import build_runtime
from app.db.base import utcnow
from app.db.models import Job, Tenant, Video, WebhookDelivery
from app.services.navigation import navigate_job
from app.services.reconcile import ADVISORY_LOCK_KEY, reconcile_once
from app.services.runtime import Runtime
from app.settings import Settings
from tests.support.queues import RecordingQueue


@pytest.fixture
def settings(integration_settings: Settings) -> Settings:
    return integration_settings.model_copy(update={"lease_s": 5.0, "recover_max_attempts": 3})


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    built = build_runtime(settings, queue=RecordingQueue())
    try:
        yield built
    finally:
        built.close()


def _video(sessions: sessionmaker[Session], status: str = "ready", **values: object
           ) -> uuid.UUID:
    with sessions() as session:
        tenant = Tenant(name=f"rec-{uuid.uuid4().hex[:8]}")
        session.add(tenant)
        session.flush()
        video = Video(tenant_id=tenant.id, sha256=hashlib.sha256(uuid.uuid4().bytes).hexdigest(),
                      original_name="v.mp4", size_bytes=1, storage_path="/nowhere/v.mp4",
                      status=status, **values)
        session.add(video)
        session.commit()
        return video.id


def _job(sessions: sessionmaker[Session], video_id: uuid.UUID, **values: object) -> uuid.UUID:
    with sessions() as session:
        video = session.get(Video, video_id)
        assert video is not None
        job = Job(tenant_id=video.tenant_id, video_id=video_id, question="what?", **values)
        session.add(job)
        session.commit()
        return job.id


def _get(sessions: sessionmaker[Session], model: type[Job] | type[Video], row_id: uuid.UUID
         ) -> Job | Video:
    with sessions() as session:
        row = session.get(model, row_id)
        assert row is not None
        return row


def _ago(seconds: float) -> object:
    return utcnow() - timedelta(seconds=seconds)


def test_a_queued_job_whose_message_was_lost_is_sent_again_once_per_lease(
        runtime: Runtime, settings: Settings) -> None:
    sessions = runtime.session_factory
    video_id = _video(sessions)
    lost = _job(sessions, video_id, created_at=_ago(60))  # its enqueue never happened
    fresh = _job(sessions, video_id)  # its message is presumably still on its way
    queue = RecordingQueue()

    done = reconcile_once(settings, sessions, queue)

    assert done.jobs_resent == [lost] and queue.calls == [("navigate", lost)]
    job = _get(sessions, Job, lost)
    assert job.recoveries == 1 and job.status == "queued"
    assert job.lease_expires_at is not None and job.lease_expires_at > utcnow()
    # Within its new lease, the next pass leaves it to the message just sent.
    assert reconcile_once(settings, sessions, queue).jobs_resent == []
    assert _get(sessions, Job, fresh).recoveries == 0


def test_running_jobs_keep_a_live_lease_and_fail_after_bounded_attempts(
        runtime: Runtime, settings: Settings) -> None:
    sessions = runtime.session_factory
    video_id = _video(sessions)
    alive = _job(sessions, video_id, status="running", attempts=1,
                 lease_expires_at=utcnow() + timedelta(seconds=30))
    died = _job(sessions, video_id, status="running", attempts=1, lease_expires_at=_ago(1))
    hopeless = _job(sessions, video_id, status="running", attempts=3, lease_expires_at=_ago(1))
    over = _job(sessions, video_id, status="succeeded", attempts=1, lease_expires_at=_ago(99))
    queue = RecordingQueue()

    done = reconcile_once(settings, sessions, queue)

    assert done.jobs_resent == [died] and done.jobs_failed == [hopeless]
    failed = _get(sessions, Job, hopeless)
    assert failed.status == "failed" and failed.error_code == "worker_lost"
    assert failed.error is not None and "started 3 times" in failed.error
    assert failed.finished_at is not None
    resent = _get(sessions, Job, died)
    assert (resent.status, resent.recoveries) == ("queued", 1)  # the next message claims it
    assert _get(sessions, Job, alive).recoveries == 0
    assert _get(sessions, Job, over).recoveries == 0


def test_a_duplicate_message_of_a_running_job_is_dropped(runtime: Runtime) -> None:
    sessions = runtime.session_factory
    video_id = _video(sessions)
    job_id = _job(sessions, video_id, status="running", attempts=1,
                  lease_expires_at=utcnow() + timedelta(seconds=30))

    navigate_job(runtime, job_id)  # another worker holds it: nothing happens

    job = _get(sessions, Job, job_id)
    assert (job.status, job.attempts) == ("running", 1)


def test_lapsed_videos_are_resent_through_ingest_or_failed(
        runtime: Runtime, settings: Settings) -> None:
    sessions = runtime.session_factory
    uploaded = _video(sessions, "uploaded", updated_at=_ago(60))
    captioning = _video(sessions, "captioning", attempts=1, lease_expires_at=_ago(1))
    stuck = _video(sessions, "ingesting", attempts=3, lease_expires_at=_ago(1))
    busy = _video(sessions, "captioning", attempts=1,
                  lease_expires_at=utcnow() + timedelta(seconds=30))
    queue = RecordingQueue()

    done = reconcile_once(settings, sessions, queue)

    assert sorted(done.videos_resent) == sorted([uploaded, captioning])
    assert sorted(queue.calls) == sorted([("ingest", uploaded), ("ingest", captioning)])
    assert done.videos_failed == [stuck]
    video = _get(sessions, Video, stuck)
    assert video.status == "failed" and video.error_code == "ingest_lost"
    assert _get(sessions, Video, busy).recoveries == 0


def test_one_pass_runs_at_a_time(runtime: Runtime, settings: Settings, pg_url: str) -> None:
    sessions = runtime.session_factory
    lost = _job(sessions, _video(sessions), created_at=_ago(60))
    with psycopg.connect(pg_url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
        queue = RecordingQueue()
        assert reconcile_once(settings, sessions, queue).skipped
        assert queue.calls == []
        other.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
    assert reconcile_once(settings, sessions, RecordingQueue()).jobs_resent == [lost]


def test_a_pending_webhook_delivery_whose_message_was_lost_is_sent_again(
        runtime: Runtime, settings: Settings) -> None:
    sessions = runtime.session_factory
    job_id = _job(sessions, _video(sessions), status="succeeded")
    with sessions() as session:
        lost = WebhookDelivery(job_id=job_id, url="https://example.com/hook",
                               created_at=_ago(60))
        waiting = WebhookDelivery(job_id=job_id, url="https://example.com/hook", attempt=1,
                                  created_at=_ago(60),
                                  lease_expires_at=utcnow() + timedelta(seconds=30))
        done_already = WebhookDelivery(job_id=job_id, url="https://example.com/hook",
                                       state="delivered", created_at=_ago(60))
        session.add_all([lost, waiting, done_already])
        session.commit()
    queue = RecordingQueue()

    done = reconcile_once(settings, sessions, queue)

    assert done.webhooks == [lost.id] and queue.calls == [("webhook", lost.id)]
