"""Questions and their jobs: create (idempotently), read, list with cursor pages, cancel, trace."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core import protocol
from app.db.base import utcnow
from app.db.models import (
    FINISHED_JOB_STATUSES,
    JOB_STATUSES,
    Job,
    TraceStep,
    Video,
    WebhookDelivery,
)
from app.errors import Conflict, InvalidInput, NotFound
from app.services import webhooks
from app.services.videos import get_video
from app.settings import Settings


@dataclass(frozen=True, slots=True)
class QuestionInput:
    """A question as the service takes it (validated shape; the API schema maps onto it)."""

    question: str
    options: tuple[str, ...] | None = None
    budgets: dict[str, int] | None = None  # max_rounds, max_video_qa_calls, max_captions_generated
    callback_url: str | None = None
    # An evaluation item's truth: {"answer": str | None, "clues": [[start_s, end_s], ...]}
    reference: dict[str, Any] | None = None

    def request_hash(self, video_id: uuid.UUID) -> str:
        """A digest of the request, to tell an idempotent retry from a reused key."""
        body = {
            "video_id": str(video_id), "question": self.question,
            "options": list(self.options) if self.options is not None else None,
            "budgets": self.budgets or {}, "callback_url": self.callback_url,
        }
        if self.reference is not None:  # absent otherwise: earlier digests stay valid
            body["reference"] = self.reference
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def settings_snapshot(settings: Settings, max_rounds: int) -> dict[str, Any]:
    """The settings a job runs with, recorded on the row so results can be reproduced."""
    return {
        "max_rounds": max_rounds, "policy_model": settings.policy_model,
        "captioner_model": settings.captioner_model, "videoqa_model": settings.videoqa_model,
        "segment_len_s": settings.segment_len_s, "min_width": settings.min_width,
        "max_width": settings.max_width, "high_frames": settings.high_frames,
        "medium_frames": settings.medium_frames, "low_frames": settings.low_frames,
        "videoqa_frames": settings.videoqa_frames, "profile": settings.effective_profile,
        "caption_preset": settings.caption_preset,
    }


def create_job(
    session: Session, tenant_id: uuid.UUID, video_id: uuid.UUID, question: QuestionInput,
    settings: Settings, *, idempotency_key: str | None = None,
) -> tuple[Job, bool]:
    """Queue a question about the tenant's video; returns (job, created).

    With an ``idempotency_key``, a retry of the same request returns the first job and a
    different request under the same key is a conflict. Questions on a video still being
    captioned are accepted: the job waits for the captions it needs.
    """
    # What the navigator would refuse when the job runs is refused now (InvalidQuestion).
    protocol.question_text(question.question, protocol.normalize_options(question.options)
                           if question.options else ())
    video = get_video(session, tenant_id, video_id)
    if video.status == "failed":
        raise Conflict("the video failed to process; upload it again",
                       code="video_failed", details={"video_id": str(video.id)})
    if question.callback_url and not settings.webhook_allow_private:
        webhooks.check_callback_url(question.callback_url, resolve=False)
    digest = question.request_hash(video_id)
    if idempotency_key is not None:
        existing = _by_idempotency_key(session, tenant_id, idempotency_key)
        if existing is not None:
            return _same_request(existing, digest), False
    budgets = dict(question.budgets or {})
    budgets["max_rounds"] = budgets.get("max_rounds") or settings.max_rounds
    job = Job(
        tenant_id=tenant_id, video_id=video.id, question=question.question,
        options=list(question.options) if question.options is not None else None,
        budgets=budgets, settings_used=settings_snapshot(settings, budgets["max_rounds"]),
        status="queued", callback_url=question.callback_url, idempotency_key=idempotency_key,
        request_hash=digest, reference=question.reference,
    )
    session.add(job)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        # A concurrent request with the same key committed first.
        existing = (
            _by_idempotency_key(session, tenant_id, idempotency_key)
            if idempotency_key is not None else None
        )
        if existing is None:
            raise
        return _same_request(existing, digest), False
    return job, True


def _by_idempotency_key(session: Session, tenant_id: uuid.UUID, key: str) -> Job | None:
    return session.scalar(
        select(Job).where(Job.tenant_id == tenant_id, Job.idempotency_key == key)
    )


def _same_request(job: Job, digest: str) -> Job:
    if job.request_hash != digest:
        raise Conflict(
            "this Idempotency-Key was already used with a different request",
            code="idempotency_key_reused", details={"job_id": str(job.id)},
        )
    return job


def get_job(session: Session, tenant_id: uuid.UUID, job_id: uuid.UUID) -> Job:
    """The tenant's job; another tenant's id is simply not found."""
    job = session.scalar(select(Job).where(Job.id == job_id, Job.tenant_id == tenant_id))
    if job is None:
        raise NotFound("no such job", code="job_not_found", details={"job_id": str(job_id)})
    return job


def encode_cursor(job: Job) -> str:
    created = job.created_at
    if created.tzinfo is None:  # SQLite returns naive datetimes; they are UTC
        created = created.replace(tzinfo=UTC)
    raw = f"{created.isoformat()}|{job.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, _, job_id = raw.partition("|")
        when = datetime.fromisoformat(created)
        if when.tzinfo is None:
            raise ValueError("naive timestamp")
        return when, uuid.UUID(job_id)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("the cursor is not one this API returned", code="invalid_cursor",
                           details={"cursor": cursor}) from exc


def list_jobs(
    session: Session, tenant_id: uuid.UUID, *, status: str | None = None,
    video_id: uuid.UUID | None = None, limit: int = 50, cursor: str | None = None,
) -> tuple[list[Job], str | None]:
    """A page of the tenant's jobs, newest first, and the cursor of the next page (or None)."""
    query = select(Job).where(Job.tenant_id == tenant_id)
    if status is not None:
        if status not in JOB_STATUSES:
            raise InvalidInput(f"status must be one of {', '.join(JOB_STATUSES)}",
                               code="invalid_status")
        query = query.where(Job.status == status)
    if video_id is not None:
        query = query.where(Job.video_id == video_id)
    if cursor is not None:
        created, last_id = decode_cursor(cursor)
        query = query.where(or_(
            Job.created_at < created, (Job.created_at == created) & (Job.id < last_id)
        ))
    rows = list(session.scalars(
        query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)
    ))
    next_cursor = encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return rows[:limit], next_cursor


def cancel_job(session: Session, tenant_id: uuid.UUID, job_id: uuid.UUID) -> Job:
    """Cancel a queued job at once; ask a running one to stop between rounds."""
    job = session.scalar(
        select(Job).where(Job.id == job_id, Job.tenant_id == tenant_id).with_for_update()
    )
    if job is None:
        raise NotFound("no such job", code="job_not_found", details={"job_id": str(job_id)})
    if job.status in FINISHED_JOB_STATUSES:
        raise Conflict(f"the job has already finished ({job.status})", code="job_finished",
                       details={"status": job.status})
    job.cancel_requested = True
    if job.status == "queued":
        job.status = "cancelled"
        job.finished_at = utcnow()
        job.error_code = "cancelled"
        job.error = "cancelled before it started"
    session.flush()
    return job


def trace_steps(session: Session, job_id: uuid.UUID, *, after: int = -1) -> Sequence[TraceStep]:
    """The job's persisted rounds with ``round_index > after``, in order."""
    return session.scalars(
        select(TraceStep).where(TraceStep.job_id == job_id, TraceStep.round_index > after)
        .order_by(TraceStep.round_index)
    ).all()


def webhook_deliveries(session: Session, job_id: uuid.UUID) -> Sequence[WebhookDelivery]:
    return session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.job_id == job_id)
        .order_by(WebhookDelivery.created_at)
    ).all()


def video_of(session: Session, job: Job) -> Video:
    video = session.get(Video, job.video_id)
    if video is None:
        raise NotFound("the job's video is gone", code="video_not_found")
    return video
