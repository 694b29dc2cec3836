"""The navigate task: answer one job's question with the core loop, round by round in Postgres.

Each round is written to ``trace_steps`` and published for the SSE stream as it happens;
cancellation is read between rounds. A redelivered job (its worker died) starts over: the
old rounds are deleted, a ``restarted`` event is published, and the navigation runs again,
cheaply, since every caption it fetched is cached. The job ends ``succeeded``,
``no_answer``, ``cancelled`` or ``failed`` with an error a user can act on.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from redis.exceptions import RedisError
from sqlalchemy import delete, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app.core.navigator import Budgets, navigate, trace_of
from app.core.trace import Trace, TraceRound
from app.db.base import utcnow
from app.db.models import FINISHED_JOB_STATUSES, Job, JobStatus, TraceStep, Video
from app.db.session import session_scope
from app.db.upsert import insert_or_skip
from app.errors import InvalidInput, ModelError, VidnavError
from app.services import leases
from app.services.captions import CaptionerFailed, CaptionService, LeafVideoQA, load_video_context
from app.services.leases import Heartbeat
from app.services.queue import RetryLater
from app.services.runtime import Runtime

logger = logging.getLogger(__name__)

_OUTCOME_STATUS: dict[str, JobStatus] = {
    "answered": "succeeded", "no_answer": "no_answer", "cancelled": "cancelled"}


class Superseded(Exception):  # noqa: N818 - control flow, never shown to a user
    """Another delivery of the same job took over (this worker was presumed dead)."""


@dataclass(frozen=True, slots=True)
class _Start:
    attempt: int
    restarted: bool
    video_id: uuid.UUID
    question: str
    options: tuple[str, ...]
    budgets: Budgets


def navigate_job(runtime: Runtime, job_id: uuid.UUID, *, final_attempt: bool = True) -> None:
    """Run (or re-run after a crash) the navigation of a queued job to its end."""
    start = _begin(runtime, job_id)
    if start is None:
        return
    events = runtime.events
    if start.restarted:
        events.publish(job_id, {"type": "restarted", "attempt": start.attempt})
    events.publish(job_id, {"type": "status", "status": "running", "attempt": start.attempt})
    try:
        with Heartbeat(runtime, lambda: leases.renew_job(runtime, job_id, start.attempt)):
            trace = runtime.run(_navigate(runtime, job_id, start))
    except Superseded:
        logger.warning("job %s was taken over by another delivery; this run stops", job_id)
        return
    except (ModelError, CaptionerFailed) as exc:
        if not final_attempt:
            _release(runtime, job_id, start.attempt)
            events.publish(job_id, {"type": "status", "status": "retrying", "error": exc.message})
            raise RetryLater(exc.message, failure=True) from exc
        # The partial trace (captions read, rounds done, the error) goes in the summary.
        _finish(runtime, job_id, start.attempt, trace_of(exc), status="failed",
                error_code=exc.code,
                error=f"{exc.message} (gave up after {start.attempt} attempts)")
        return
    except VidnavError as exc:
        _finish(runtime, job_id, start.attempt, trace_of(exc), status="failed",
                error_code=exc.code, error=exc.message)
        return
    except (DBAPIError, RedisError) as exc:
        # Postgres or Redis away (a restart, a failover) is no fault of the job: retry it,
        # or, when even handing it back fails, leave it to its lease and the reconciler.
        logger.warning("job %s interrupted by an infrastructure fault: %s", job_id, exc)
        if final_attempt or not _release(runtime, job_id, start.attempt):
            return
        raise RetryLater(f"infrastructure fault: {exc}", failure=True) from exc
    except Exception as exc:
        logger.exception("navigation of job %s crashed", job_id)
        _finish(runtime, job_id, start.attempt, trace_of(exc), status="failed",
                error_code="internal_error", error=f"navigation failed unexpectedly: {exc!r}")
        return
    status = _OUTCOME_STATUS.get(trace.outcome or "", "failed")
    error_code = error = None
    if status == "no_answer":
        error_code = "no_answer"
        error = f"the policy gave no answer within {trace.max_rounds} rounds"
    elif status == "cancelled":
        error_code, error = "cancelled", "cancelled while running"
    _finish(runtime, job_id, start.attempt, trace, status=status, error_code=error_code,
            error=error)


def _release(runtime: Runtime, job_id: uuid.UUID, attempt: int) -> bool:
    """This run will be retried: hand the job back to the queue (``queued``), so the retry
    claims it like any message while a duplicate of a running job's message does not.
    False when the job could not be handed back (Postgres away, or no longer this run's)."""
    try:
        with session_scope(runtime.session_factory) as session:
            released = session.execute(
                update(Job).where(Job.id == job_id, Job.attempts == attempt,
                                  Job.status == "running")
                .values(status="queued", lease_expires_at=leases.deadline(runtime.settings))
            ).rowcount  # type: ignore[attr-defined]
    except DBAPIError as exc:
        logger.warning("job %s not handed back (its lease will lapse): %s", job_id, exc)
        return False
    return bool(released)


def _begin(runtime: Runtime, job_id: uuid.UUID) -> _Start | None:
    """Claim the job for this run, or say why not (finished, cancelled, video not ready,
    or running under another task's live lease: this message is a duplicate)."""
    with session_scope(runtime.session_factory) as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None:
            logger.info("navigate task for missing job %s dropped", job_id)
            return None
        if job.status in FINISHED_JOB_STATUSES:
            return None
        if job.status == "running" and leases.held(job.lease_expires_at):
            logger.info("navigate task for job %s dropped: attempt %d holds it", job_id,
                        job.attempts)
            return None
        if job.cancel_requested:
            job.status, job.finished_at = "cancelled", utcnow()
            job.error_code, job.error = "cancelled", "cancelled before it started"
            cancelled = True
        else:
            cancelled = False
            video = session.get(Video, job.video_id)
            if video is None or video.status == "failed":
                reason = video.error if video is not None else "the video was deleted"
                job.status, job.finished_at = "failed", utcnow()
                job.error_code = "video_failed"
                job.error = f"the video could not be processed: {reason}"
                cancelled = True
            elif video.status != "ready":
                # Too early, not a failure: the mode's captions ahead are still running.
                raise RetryLater(f"video {video.id} is {video.status}", failure=False,
                                 countdown=runtime.settings.navigate_wait_s)
    if cancelled:
        _publish_result(runtime, job_id)
        return None

    with session_scope(runtime.session_factory) as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None or job.status in FINISHED_JOB_STATUSES or (
                job.status == "running" and leases.held(job.lease_expires_at)):
            return None  # deleted, or finished or claimed by a concurrent delivery meanwhile
        restarted = job.status == "running" or job.attempts > 0
        if restarted:
            session.execute(delete(TraceStep).where(TraceStep.job_id == job_id))
        job.status = "running"
        job.attempts += 1
        job.lease_expires_at = leases.deadline(runtime.settings)
        job.started_at = job.started_at or utcnow()
        job.progress_round = 0
        budgets = dict(job.budgets or {})
        budgets.setdefault("max_rounds", runtime.settings.max_rounds)
        try:
            parsed = Budgets(**{k: v for k, v in budgets.items()
                                if k in ("max_rounds", "max_video_qa_calls",
                                         "max_captions_generated")})
        except InvalidInput as exc:
            job.status, job.finished_at = "failed", utcnow()
            job.error_code, job.error = exc.code, exc.message
            parsed = None
        start = _Start(attempt=job.attempts, restarted=restarted, video_id=job.video_id,
                       question=job.question, options=tuple(job.options or ()),
                       budgets=parsed or Budgets())
    if parsed is None:
        _publish_result(runtime, job_id)
        return None
    return start


async def _navigate(runtime: Runtime, job_id: uuid.UUID, start: _Start) -> Trace:
    ctx = await asyncio.to_thread(load_video_context, runtime, start.video_id)

    async def on_round(rnd: TraceRound) -> None:
        await asyncio.to_thread(_save_round, runtime, job_id, start.attempt, rnd)
        runtime.events.publish(job_id, {"type": "round", "round": rnd.to_dict()})

    async def should_cancel() -> bool:
        return await asyncio.to_thread(_cancel_requested, runtime, job_id, start.attempt)

    return await navigate(
        question=start.question, options=start.options, geometry=ctx.geometry,
        policy=runtime.policy, captions=CaptionService(runtime, ctx),
        video_qa=LeafVideoQA(runtime, ctx), budgets=start.budgets,
        on_round=on_round, should_cancel=should_cancel,
    )


def _save_round(runtime: Runtime, job_id: uuid.UUID, attempt: int, rnd: TraceRound) -> None:
    with session_scope(runtime.session_factory) as session:
        updated = session.execute(
            update(Job).where(Job.id == job_id, Job.attempts == attempt)
            .values(progress_round=rnd.index + 1)
        ).rowcount  # type: ignore[attr-defined]
        if not updated:
            raise Superseded(str(job_id))
        insert = insert_or_skip(TraceStep, session.get_bind().dialect.name,
                                ("job_id", "round_index"))
        session.execute(insert.values(
            id=uuid.uuid4(), job_id=job_id, round_index=rnd.index, kind=rnd.kind,
            node_key=rnd.node_key, start_s=rnd.start, end_s=rnd.end, payload=rnd.to_dict(),
            created_at=utcnow(),
        ))


def _cancel_requested(runtime: Runtime, job_id: uuid.UUID, attempt: int) -> bool:
    with session_scope(runtime.session_factory) as session:
        row = session.execute(
            select(Job.cancel_requested, Job.attempts).where(Job.id == job_id)
        ).one_or_none()
    if row is None:
        return True  # deleted with its video: nothing left to answer for
    if row.attempts != attempt:
        raise Superseded(str(job_id))
    return bool(row.cancel_requested)


def _finish(runtime: Runtime, job_id: uuid.UUID, attempt: int, trace: Trace | None, *,
            status: str, error_code: str | None, error: str | None) -> None:
    """Record the job's end (only if this run still owns it), then announce it."""
    delivery_id = None
    with session_scope(runtime.session_factory) as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None or job.attempts != attempt or job.status in FINISHED_JOB_STATUSES:
            return
        job.status = status
        job.finished_at = utcnow()
        job.error_code, job.error = error_code, error
        if trace is not None:
            job.answer = trace.answer
            job.progress_round = len(trace.rounds)
            # The trace summary (what metrics and the API read), plus the parts of the trace
            # that are not rounds: those are the job's trace_steps.
            summary: dict[str, Any] = trace.summary.to_dict()
            full = trace.to_dict()
            for key in ("outcome", "stop_reason", "error", "budgets", "high_captions",
                        "width", "duration"):
                summary[key] = full[key]
            job.summary = summary
        delivery_id = _create_delivery(session, job)
    _publish_result(runtime, job_id)
    if delivery_id is not None:
        runtime.queue.enqueue_webhook(delivery_id)


def _create_delivery(session: Session, job: Job) -> uuid.UUID | None:
    from app.services import webhooks

    delivery = webhooks.create_delivery(session, job)
    return None if delivery is None else delivery.id


def _publish_result(runtime: Runtime, job_id: uuid.UUID) -> None:
    with session_scope(runtime.session_factory) as session:
        job = session.get(Job, job_id)
        if job is None:
            return
        event = {"type": "result", "status": job.status, "answer": job.answer,
                 "error_code": job.error_code, "error": job.error,
                 "rounds": job.progress_round}
    runtime.events.publish(job_id, event)


def deliver_webhook(runtime: Runtime, delivery_id: uuid.UUID, *, final_attempt: bool = True
                    ) -> None:
    """One attempt at a job-finished webhook; the delivery row counts its own attempts."""
    from app.services import webhooks

    settings = runtime.settings
    # Held for this attempt: the reconciler must not send it again while it is in flight.
    leases.renew_delivery(runtime, delivery_id, extra_s=settings.webhook_timeout_s * 2)
    with httpx.Client(timeout=settings.webhook_timeout_s) as client:
        result = webhooks.deliver(runtime.session_factory, delivery_id, client,
                                  max_attempts=settings.webhook_max_attempts,
                                  allow_private=settings.webhook_allow_private)
    if result.retry:
        raise RetryLater(result.error or "webhook not delivered", failure=False,
                         countdown=webhooks.retry_delay_s(result.attempt))
