"""Leases: how a video or job that is not finished says who owns it, and until when.

A row's ``lease_expires_at`` is the time until which its current owner (a message in the
queue, a task that is running, a retry waiting for its countdown) is presumed alive. Each
owner keeps it ahead of the clock: the API's commit leaves it unset (read as "since the row
was written"), a task claiming the row sets it, a running task renews it (``Heartbeat``),
a retry pushes it past its countdown (``hold``). When it lapses, nothing owns the row any
more and the reconciler (``app.services.reconcile``) sends the work again.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError

from app.db.base import utcnow
from app.db.models import FINISHED_JOB_STATUSES, Job, Video, WebhookDelivery
from app.db.session import session_scope
from app.services.runtime import Runtime
from app.settings import Settings

logger = logging.getLogger(__name__)

# A video in one of these has nothing left to run for it.
FINISHED_VIDEO_STATUSES = frozenset({"ready", "failed"})


def deadline(settings: Settings, extra_s: float = 0.0) -> datetime:
    """When a lease taken now lapses: one lease period (plus ``extra_s``) from now."""
    return utcnow() + timedelta(seconds=settings.lease_s + extra_s)


def aware(when: datetime) -> datetime:
    """SQLite returns naive datetimes; they are UTC."""
    return when if when.tzinfo is not None else when.replace(tzinfo=utcnow().tzinfo)


def held(when: datetime | None) -> bool:
    """Whether a lease that lapses at ``when`` is still held."""
    return when is not None and aware(when) > utcnow()


def renew_job(runtime: Runtime, job_id: uuid.UUID, attempt: int | None = None,
              extra_s: float = 0.0) -> bool:
    """Push the job's lease one period ahead, if it is not finished (and, with
    ``attempt``, still this run's); False when it was not."""
    query = update(Job).where(Job.id == job_id, Job.status.not_in(FINISHED_JOB_STATUSES))
    if attempt is not None:
        query = query.where(Job.attempts == attempt)
    with session_scope(runtime.session_factory) as session:
        changed = session.execute(
            query.values(lease_expires_at=deadline(runtime.settings, extra_s))).rowcount  # type: ignore[attr-defined]
    return bool(changed)


def renew_video(runtime: Runtime, video_id: uuid.UUID, extra_s: float = 0.0) -> bool:
    """Push the video's lease one period ahead while it is being ingested or captioned."""
    with session_scope(runtime.session_factory) as session:
        changed = session.execute(
            update(Video).where(Video.id == video_id,
                                Video.status.not_in(FINISHED_VIDEO_STATUSES))
            .values(lease_expires_at=deadline(runtime.settings, extra_s))).rowcount  # type: ignore[attr-defined]
    return bool(changed)


def renew_delivery(runtime: Runtime, delivery_id: uuid.UUID, extra_s: float = 0.0) -> bool:
    """Push a pending webhook delivery's lease one period (plus ``extra_s``) ahead."""
    with session_scope(runtime.session_factory) as session:
        changed = session.execute(
            update(WebhookDelivery).where(WebhookDelivery.id == delivery_id,
                                          WebhookDelivery.state == "pending")
            .values(lease_expires_at=deadline(runtime.settings, extra_s))).rowcount  # type: ignore[attr-defined]
    return bool(changed)


def hold(runtime: Runtime, task_name: str, row_id: uuid.UUID, countdown_s: float) -> None:
    """A task will run again after ``countdown_s``: keep its row's lease past then, so the
    reconciler does not send it a second time meanwhile."""
    try:
        if task_name == "vidnav.navigate":
            renew_job(runtime, row_id, extra_s=countdown_s)
        elif task_name in ("vidnav.ingest", "vidnav.caption"):
            renew_video(runtime, row_id, extra_s=countdown_s)
        elif task_name == "vidnav.webhook":
            renew_delivery(runtime, row_id, extra_s=countdown_s)
    except SQLAlchemyError as exc:  # the lease lapses and the reconciler resends: harmless
        logger.warning("could not extend the lease of %s %s: %s", task_name, row_id, exc)


class Heartbeat:
    """Renews a lease every third of its period on a daemon thread while a task runs::

        with Heartbeat(runtime, lambda: renew_job(runtime, job_id, attempt)):
            ...

    ``renew`` returning False (the row finished, or another run took it over) stops it."""

    def __init__(self, runtime: Runtime, renew: Callable[[], bool]) -> None:
        self.renew = renew
        self.interval = max(0.2, runtime.settings.lease_s / 3)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="vidnav-lease", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if not self.renew():
                    return
            except SQLAlchemyError as exc:  # Postgres away: try again next beat
                logger.warning("could not renew a lease: %s", exc)
