"""API schemas, separate from the tables: what clients send and what they get back."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator

from app.db.models import (
    Job,
    JobStatus,
    Subtitle,
    TraceStep,
    Video,
    VideoStatus,
    WebhookDelivery,
)


def _as_utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; vidnav stores UTC everywhere.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


Timestamp = Annotated[datetime, AfterValidator(_as_utc)]


def _no_nul(value: str) -> str:
    # Postgres text and JSON cannot hold NUL; refuse it here rather than fail on insert.
    if "\x00" in value:
        raise ValueError("text must not contain NUL characters")
    return value



class ErrorInfo(BaseModel):
    code: str
    message: str


class TreeNodePublic(BaseModel):
    key: str = Field(description="Top-level node id, e.g. '3'")
    start_s: float
    end_s: float
    caption: str | None = Field(description="The node's caption once generated")


class TreePublic(BaseModel):
    width: int | None = Field(description="Children per node (the tree has three levels)")
    nodes: list[TreeNodePublic]


class CaptionProgress(BaseModel):
    done: int
    total: int


class VideoPublic(BaseModel):
    id: uuid.UUID
    status: VideoStatus
    original_name: str
    size_bytes: int
    sha256: str
    duration_s: float | None
    num_frames: int | None
    fps: float | None
    width: int | None
    height: int | None
    tree_width: int | None
    caption_mode: str
    captions: CaptionProgress
    error: ErrorInfo | None
    created_at: Timestamp
    updated_at: Timestamp

    @classmethod
    def of(cls, video: Video) -> VideoPublic:
        probe = video.probe or {}
        return cls(
            id=video.id, status=video.status,  # type: ignore[arg-type]
            original_name=video.original_name, size_bytes=video.size_bytes,
            sha256=video.sha256, duration_s=video.duration_s, num_frames=video.num_frames,
            fps=video.fps, width=probe.get("width"), height=probe.get("height"),
            tree_width=video.tree_width, caption_mode=video.caption_mode,
            captions=CaptionProgress(done=video.captions_done, total=video.captions_total),
            error=ErrorInfo(code=video.error_code or "error", message=video.error)
            if video.error else None,
            created_at=video.created_at, updated_at=video.updated_at,
        )


class VideoDetail(VideoPublic):
    probe: dict[str, Any] | None = Field(description="ffprobe facts about the file")
    tree: TreePublic

    @field_validator("probe")
    @classmethod
    def _no_server_path(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        # The stored probe keeps where the file lives on the server; clients never see it.
        return None if value is None else {k: v for k, v in value.items() if k != "path"}


class VideoList(BaseModel):
    items: list[VideoPublic]
    next_offset: int | None = Field(description="Offset of the next page, or null at the end")


class SubtitlePublic(BaseModel):
    id: uuid.UUID
    video_id: uuid.UUID
    source: str
    format: str
    language: str | None
    line_count: int
    created_at: Timestamp

    @classmethod
    def of(cls, row: Subtitle) -> SubtitlePublic:
        return cls(id=row.id, video_id=row.video_id, source=row.source, format=row.format,
                   language=row.language, line_count=len(row.lines), created_at=row.created_at)


class Budgets(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_rounds: int | None = Field(default=None, ge=1, le=200,
                                   description="Most navigation rounds before giving up")
    max_video_qa_calls: int | None = Field(default=None, ge=0, le=1000,
                                           description="Most video_qa tool calls")
    max_captions_generated: int | None = Field(
        default=None, ge=0, le=100_000,
        description="Most captions the navigation may have generated (cached ones are free)",
    )


class Reference(BaseModel):
    """The truth of an evaluation item, kept with its job so the job can be scored."""

    model_config = ConfigDict(extra="forbid")

    answer: str | None = Field(default=None, max_length=4000,
                               description="The correct answer (the letter for options)")
    clues: list[tuple[float, float]] = Field(
        default_factory=list, max_length=1000,
        description="Where the evidence is: [[start_s, end_s], ...]")

    @field_validator("answer")
    @classmethod
    def _answer(cls, value: str | None) -> str | None:
        return None if value is None else _no_nul(value)

    @field_validator("clues")
    @classmethod
    def _clues(cls, value: list[tuple[float, float]]) -> list[tuple[float, float]]:
        for start, end in value:
            if not (math.isfinite(start) and math.isfinite(end)) or not 0 <= start <= end:
                raise ValueError("each clue is [start_s, end_s] with 0 <= start <= end")
        return value


class QuestionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=4000)
    options: list[str] | None = Field(
        default=None, min_length=2, max_length=26,
        description="Multiple-choice options (answers then name one)",
    )
    budgets: Budgets | None = None
    callback_url: AnyHttpUrl | None = Field(
        default=None, description="Called (signed, retried) when the job finishes"
    )
    reference: Reference | None = Field(
        default=None, description="An evaluation item's answer and clue intervals: the job "
                                  "is then scored (answer match, localization F1)")

    @field_validator("question")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the question is blank")
        return _no_nul(value)

    @field_validator("options")
    @classmethod
    def _options(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            for option in value:
                if not option.strip() or len(option) > 1000:
                    raise ValueError("each option must have 1 to 1000 non-blank characters")
                _no_nul(option)
        return value

    @field_validator("callback_url")
    @classmethod
    def _url_length(cls, value: AnyHttpUrl | None) -> AnyHttpUrl | None:
        if value is not None and len(str(value)) > 2000:
            raise ValueError("the callback URL is longer than 2000 characters")
        return value


class JobPublic(BaseModel):
    id: uuid.UUID
    video_id: uuid.UUID
    status: JobStatus
    question: str
    options: list[str] | None
    budgets: dict[str, Any] | None
    rounds: int = Field(description="Navigation rounds completed so far")
    answer: str | None
    error: ErrorInfo | None
    summary: dict[str, Any] | None = Field(description="Trace summary once finished")
    reference: Reference | None = Field(default=None,
                                        description="The evaluation item's truth, if given")
    callback_url: str | None
    cancel_requested: bool
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None

    @classmethod
    def of(cls, job: Job) -> JobPublic:
        return cls(
            id=job.id, video_id=job.video_id, status=job.status,  # type: ignore[arg-type]
            question=job.question, options=job.options, budgets=job.budgets,
            rounds=job.progress_round, answer=job.answer,
            error=ErrorInfo(code=job.error_code or "error", message=job.error or "")
            if job.error_code or job.error else None,
            summary=job.summary,
            reference=Reference.model_validate(job.reference) if job.reference else None,
            callback_url=job.callback_url,
            cancel_requested=job.cancel_requested, created_at=job.created_at,
            started_at=job.started_at, finished_at=job.finished_at,
        )


class JobList(BaseModel):
    items: list[JobPublic]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page")


class TraceRoundPublic(BaseModel):
    index: int
    kind: str
    node_key: str | None
    start_s: float | None
    end_s: float | None
    round: dict[str, Any] = Field(description="The round as the navigator recorded it")
    created_at: Timestamp

    @classmethod
    def of(cls, step: TraceStep) -> TraceRoundPublic:
        return cls(index=step.round_index, kind=step.kind, node_key=step.node_key,
                   start_s=step.start_s, end_s=step.end_s, round=step.payload,
                   created_at=step.created_at)


class TracePublic(BaseModel):
    job_id: uuid.UUID
    status: JobStatus
    rounds: list[TraceRoundPublic]
    summary: dict[str, Any] | None


class ThumbnailsPublic(BaseModel):
    version: int
    tile_width: int = Field(description="Width of each tile in the sprite, in pixels")
    tile_height: int
    columns: int = Field(description="Tiles per row; tile i is at row i // columns")
    count: int = Field(description="Tiles: one per leaf, in time order")
    nodes: dict[str, int] = Field(description="Each node key's tile (a higher node shows the "
                                              "leaf at its middle)")
    sprite: str = Field(description="Where the sprite JPEG is")


class WebhookDeliveryPublic(BaseModel):
    id: uuid.UUID
    url: str
    event: str
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    status_code: int | None
    error: str | None
    created_at: Timestamp
    delivered_at: Timestamp | None

    @classmethod
    def of(cls, row: WebhookDelivery) -> WebhookDeliveryPublic:
        return cls(id=row.id, url=row.url, event=row.event, state=row.state,  # type: ignore[arg-type]
                   attempts=row.attempt, status_code=row.status_code, error=row.error,
                   created_at=row.created_at, delivered_at=row.delivered_at)


class WebhookDeliveryList(BaseModel):
    items: list[WebhookDeliveryPublic]


class Health(BaseModel):
    status: Literal["ok"]


class CheckResult(BaseModel):
    ok: bool
    detail: str | None = None


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    checks: dict[str, CheckResult]
