"""The reconciler: Postgres, not the broker, guarantees that every video and job ends.

A queued message lives only in Redis; a flush, a killed worker or an enqueue that failed
after its commit loses it, and the row would wait for good. Every unfinished row therefore
carries a lease (``app.services.leases``); a pass here finds the rows whose lease lapsed and
either sends their task again (at most one message per lease period, spaced further out
each time) or, when tasks started on the row ``VIDNAV_RECOVER_MAX_ATTEMPTS`` times without
finishing it, fails it with a reason.

Sending twice is harmless: a task that finds its row finished, or running under another
task's live lease, does nothing, and a job's end is written only by the run that owns it
(``app.services.navigation``). On Postgres one pass runs at a time across all processes
(an advisory lock; the others skip their turn) and rows are taken with ``SKIP LOCKED``.

``Reconciler`` runs passes every ``VIDNAV_RECONCILE_INTERVAL_S`` on a daemon thread: in each
Celery worker's main process (``workers/celery_app.py``) and in ``vidnav serve``. The
embedded default's first pass resumes everything unfinished at once, since its in-process
queue did not outlive the previous process.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, func, or_, select, true
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from app.db.base import utcnow
from app.db.models import FINISHED_JOB_STATUSES, Job, Video, WebhookDelivery
from app.db.session import session_scope
from app.services.housekeeping import sweep_stale_uploads
from app.services.leases import FINISHED_VIDEO_STATUSES
from app.services.queue import TaskQueue
from app.settings import Settings

logger = logging.getLogger(__name__)

ADVISORY_LOCK_KEY = 0x7669646E6176  # "vidnav": one reconciler pass at a time
BATCH = 500
MAX_BACKOFF = 8  # a row nobody takes is resent at most every 8 lease periods


@dataclass
class Pass:
    """What one pass did (``skipped``: another process held the lock)."""

    skipped: bool = False
    jobs_resent: list[uuid.UUID] = field(default_factory=list)
    jobs_failed: list[uuid.UUID] = field(default_factory=list)
    videos_resent: list[uuid.UUID] = field(default_factory=list)
    videos_failed: list[uuid.UUID] = field(default_factory=list)
    webhooks: list[uuid.UUID] = field(default_factory=list)


def reconcile_once(settings: Settings, sessions: sessionmaker[Session], queue: TaskQueue, *,
                   resume: bool = False, sweep: bool = True) -> Pass:
    """One pass: resend or fail every unfinished row whose lease lapsed (``resume``: every
    unfinished row, leases aside). Messages are sent after the commit. ``sweep``: then
    remove what killed uploads left on disk (``app.services.housekeeping``)."""
    done = Pass()
    with session_scope(sessions) as session:
        if session.get_bind().dialect.name == "postgresql" and not session.scalar(
                select(func.pg_try_advisory_xact_lock(ADVISORY_LOCK_KEY))):
            done.skipped = True
            return done
        _jobs(settings, session, done, resume)
        _videos(settings, session, done, resume)
        _deliveries(settings, session, done, resume)
    _send(queue, done)
    if sweep:
        sweep_stale_uploads(settings, sessions)
    return done


def _lapsed(lease: InstrumentedAttribute[datetime | None],
            since: InstrumentedAttribute[datetime], settings: Settings,
            resume: bool) -> ColumnElement[bool]:
    """Rows whose lease lapsed; an unset lease counts from ``since`` (the row's write)."""
    if resume:
        return true()
    now = utcnow()
    return or_(lease < now,
               and_(lease.is_(None), since < now - timedelta(seconds=settings.lease_s)))


def _next_lease(settings: Settings, recoveries: int) -> datetime:
    periods = min(2 ** max(0, recoveries - 1), MAX_BACKOFF)
    return utcnow() + timedelta(seconds=settings.lease_s * periods)


def _jobs(settings: Settings, session: Session, done: Pass, resume: bool) -> None:
    from app.services import webhooks

    rows = session.scalars(
        select(Job).where(Job.status.not_in(FINISHED_JOB_STATUSES),
                          _lapsed(Job.lease_expires_at, Job.created_at, settings, resume))
        .order_by(Job.created_at).limit(BATCH).with_for_update(skip_locked=True)
    ).all()
    for job in rows:
        if job.status == "running" and job.attempts >= settings.recover_max_attempts:
            job.status, job.finished_at = "failed", utcnow()
            job.error_code = "worker_lost"
            job.error = (f"the job was started {job.attempts} times and its worker stopped "
                         "each time before finishing (its lease lapsed); gave up")
            job.lease_expires_at = None
            delivery = webhooks.create_delivery(session, job)
            if delivery is not None:
                done.webhooks.append(delivery.id)
            done.jobs_failed.append(job.id)
            logger.error("job %s failed: %s", job.id, job.error)
            continue
        # Back to the queue: the dead run owns it no more, the message sent now claims it.
        job.status = "queued"
        job.recoveries += 1
        job.lease_expires_at = _next_lease(settings, job.recoveries)
        done.jobs_resent.append(job.id)


def _videos(settings: Settings, session: Session, done: Pass, resume: bool) -> None:
    rows = session.scalars(
        select(Video).where(Video.status.not_in(FINISHED_VIDEO_STATUSES),
                            _lapsed(Video.lease_expires_at, Video.updated_at, settings,
                                    resume))
        .order_by(Video.created_at).limit(BATCH).with_for_update(skip_locked=True)
    ).all()
    for video in rows:
        if video.status != "uploaded" and video.attempts >= settings.recover_max_attempts:
            stage = "captioning" if video.status == "captioning" else "ingest"
            video.status = "failed"
            video.error_code = f"{stage}_lost"
            video.error = (f"its {stage} was started {video.attempts} times and the worker "
                           "stopped each time before finishing (its lease lapsed); gave up")
            video.lease_expires_at = None
            done.videos_failed.append(video.id)
            logger.error("video %s failed: %s", video.id, video.error)
            continue
        if video.status == "ingesting":
            video.status = "uploaded"  # the dead ingest owns it no more
        video.recoveries += 1
        video.lease_expires_at = _next_lease(settings, video.recoveries)
        done.videos_resent.append(video.id)


def _deliveries(settings: Settings, session: Session, done: Pass, resume: bool) -> None:
    """Pending webhook deliveries whose message was lost: sent again (each attempt counts
    against ``VIDNAV_WEBHOOK_MAX_ATTEMPTS`` in the delivery itself)."""
    rows = session.scalars(
        select(WebhookDelivery).where(
            WebhookDelivery.state == "pending",
            _lapsed(WebhookDelivery.lease_expires_at, WebhookDelivery.created_at, settings,
                    resume))
        .order_by(WebhookDelivery.created_at).limit(BATCH).with_for_update(skip_locked=True)
    ).all()
    for delivery in rows:
        delivery.lease_expires_at = _next_lease(settings, delivery.attempt + 1)
        done.webhooks.append(delivery.id)


def _send(queue: TaskQueue, done: Pass) -> None:
    """Send after the commit; a send that fails is retried when its new lease lapses."""
    sends: list[tuple[Callable[[uuid.UUID], None], uuid.UUID]]
    sends = [(queue.enqueue_navigate, job_id) for job_id in done.jobs_resent]
    sends += [(queue.enqueue_ingest, video_id) for video_id in done.videos_resent]
    sends += [(queue.enqueue_webhook, delivery_id)
              for delivery_id in dict.fromkeys(done.webhooks)]
    for send, row_id in sends:
        try:
            send(row_id)
        except Exception as exc:  # the broker is down: the next lapse tries again
            logger.warning("could not resend work for %s: %s", row_id, exc)
            return
    if done.jobs_resent or done.videos_resent or done.jobs_failed or done.videos_failed \
            or done.webhooks:
        logger.warning("reconciler: resent %d jobs, %d videos and %d webhook deliveries, "
                       "failed %d jobs and %d videos", len(done.jobs_resent),
                       len(done.videos_resent), len(done.webhooks), len(done.jobs_failed),
                       len(done.videos_failed))


class Reconciler:
    """Runs ``reconcile_once`` every ``VIDNAV_RECONCILE_INTERVAL_S`` on a daemon thread
    (``resume_first``: the first pass, at once, resumes every unfinished row)."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session], queue: TaskQueue,
                 *, resume_first: bool = False) -> None:
        self.settings, self.sessions, self.queue = settings, sessions, queue
        self.resume_first = resume_first
        self.interval = settings.reconcile_interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="vidnav-reconciler",
                                        daemon=True)

    def start(self) -> Reconciler:
        self._thread.start()
        return self

    def _loop(self) -> None:
        resume = self.resume_first
        while True:
            try:
                reconcile_once(self.settings, self.sessions, self.queue, resume=resume)
            except Exception as exc:  # Postgres or the broker away: the next pass retries
                logger.warning("reconciler pass failed: %s", exc)
            resume = False
            if self._stop.wait(self.interval):
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
