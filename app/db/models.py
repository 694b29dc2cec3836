"""The tables. API schemas live in ``app.api.schemas``; these are storage only."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal, get_args

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db.base import Base, JSONType, utcnow

# The states a video and a job go through; their ``status`` columns hold one of these.
VideoStatus = Literal["uploaded", "ingesting", "captioning", "ready", "failed"]
JobStatus = Literal["queued", "running", "succeeded", "no_answer", "failed", "cancelled"]
VIDEO_STATUSES: tuple[VideoStatus, ...] = get_args(VideoStatus)
JOB_STATUSES: tuple[JobStatus, ...] = get_args(JobStatus)
# A job in one of these is over: nothing runs it any more and it cannot be cancelled.
FINISHED_JOB_STATUSES: frozenset[JobStatus] = frozenset(
    {"succeeded", "no_answer", "failed", "cancelled"})


def new_id() -> uuid.UUID:
    return uuid.uuid4()


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    rate_limit_per_minute: Mapped[int | None] = mapped_column(Integer)
    upload_quota_bytes: Mapped[int | None] = mapped_column(BigInteger)
    webhook_secret: Mapped[str | None] = mapped_column(String(64))  # HMAC key for callbacks
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    api_keys: Mapped[list[ApiKey]] = relationship(back_populates="tenant", lazy="raise")


class ApiKey(Base):
    """An API key, stored as a SHA-256 hash; ``prefix`` is shown to people to tell keys apart."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200), default="default")
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column()

    tenant: Mapped[Tenant] = relationship(back_populates="api_keys", lazy="raise")


class Video(Base):
    __tablename__ = "videos"
    __table_args__ = (UniqueConstraint("tenant_id", "sha256"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    original_name: Mapped[str] = mapped_column(String(500))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    storage_path: Mapped[str] = mapped_column(String(1000))
    # uploaded -> ingesting -> captioning -> ready | failed
    status: Mapped[str] = mapped_column(String(20), default="uploaded", index=True)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    probe: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    duration_s: Mapped[float | None] = mapped_column(Float)
    num_frames: Mapped[int | None] = mapped_column(Integer)
    fps: Mapped[float | None] = mapped_column(Float)
    tree_width: Mapped[int | None] = mapped_column(Integer)
    caption_mode: Mapped[str] = mapped_column(String(10), default="online")
    captioner_version: Mapped[str | None] = mapped_column(String(64))
    captions_done: Mapped[int] = mapped_column(Integer, default=0)
    captions_total: Mapped[int] = mapped_column(Integer, default=0)
    # The lease of the task that owns the video while it is not ready or failed (ingest or
    # the captions ahead): unset means since ``updated_at`` (app/services/reconcile.py).
    lease_expires_at: Mapped[datetime | None] = mapped_column()
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # tasks that started on it
    recoveries: Mapped[int] = mapped_column(Integer, default=0)  # sent again by the reconciler
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Subtitle(Base):
    """A timed text track of a video: uploaded, sidecar, embedded, or a speech transcript."""

    __tablename__ = "subtitles"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    video_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("videos.id", ondelete="CASCADE"), index=True
    )
    source: Mapped[str] = mapped_column(String(20))  # upload | embedded | transcript
    format: Mapped[str] = mapped_column(String(10))  # srt | vtt | whisper | ...
    language: Mapped[str | None] = mapped_column(String(20))
    # [[start_s, end_s, text], ...] sorted by start
    lines: Mapped[list[Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CaptionNode(Base):
    """One node's caption, keyed by content hash + captioner config version + node.

    Keyed by content, not by video row, so every upload of the same bytes reuses it.
    """

    __tablename__ = "caption_nodes"
    __table_args__ = (UniqueConstraint("content_sha256", "config_version", "node_key"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    content_sha256: Mapped[str] = mapped_column(String(64))
    config_version: Mapped[str] = mapped_column(String(64))
    node_key: Mapped[str] = mapped_column(String(20))  # "h", "h,m" or "h,m,l"
    level: Mapped[int] = mapped_column(Integer)  # 1 high, 2 medium, 3 low
    first_frame: Mapped[int] = mapped_column(Integer)
    last_frame: Mapped[int] = mapped_column(Integer)
    frame_times: Mapped[list[float]] = mapped_column(JSONType)
    caption: Mapped[str] = mapped_column(Text)
    raw_reply: Mapped[str | None] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(String(200))
    model_seconds: Mapped[float | None] = mapped_column(Float)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Job(Base):
    """A question and its answering; this row is the truth about the job."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key"),
        Index("ix_jobs_tenant_created", "tenant_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    video_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("videos.id", ondelete="CASCADE"), index=True
    )
    question: Mapped[str] = mapped_column(Text)
    options: Mapped[list[str] | None] = mapped_column(JSONType)
    budgets: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    settings_used: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # queued -> running -> succeeded | no_answer | failed | cancelled
    status: Mapped[str] = mapped_column(String(20), default="queued", index=True)
    progress_round: Mapped[int] = mapped_column(Integer, default=0)
    answer: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # An evaluation item's truth: {"answer": str | None, "clues": [[start_s, end_s], ...]}
    reference: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    callback_url: Mapped[str | None] = mapped_column(String(2000))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The lease of its queued message or running task: unset means since ``created_at``.
    lease_expires_at: Mapped[datetime | None] = mapped_column()
    recoveries: Mapped[int] = mapped_column(Integer, default=0)  # sent again by the reconciler
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()


class TraceStep(Base):
    """One round of a navigation, in order; ``payload`` is the core trace round as JSON."""

    __tablename__ = "trace_steps"
    __table_args__ = (UniqueConstraint("job_id", "round_index"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    round_index: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20))
    node_key: Mapped[str | None] = mapped_column(String(20))
    start_s: Mapped[float | None] = mapped_column(Float)
    end_s: Mapped[float | None] = mapped_column(Float)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(2000))
    event: Mapped[str] = mapped_column(String(40), default="job.finished")
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(20), default="pending")  # pending|delivered|failed
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column()
    # While pending: the lease of its queued message or retry (unset: since created_at).
    lease_expires_at: Mapped[datetime | None] = mapped_column()
