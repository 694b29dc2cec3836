"""Questions about local video files (``vidnav ask``, evaluation runs): the same services an
API client goes through, plus waiting for the work to finish.

A local file is registered for a local tenant (hard-linked into the data directory when it
can be), ingested and captioned on the runtime's task queue; then a job is created and
followed until it ends, and the finished job is read back with its trace.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.core.protocol import normalize_options, question_text
from app.core.trace import TraceRound
from app.db.models import FINISHED_JOB_STATUSES, Job, Video
from app.db.session import session_scope
from app.errors import InvalidInput, NotFound, VidnavError
from app.models.cpu.captioner import without_clip_intro
from app.services.jobs import QuestionInput, create_job, trace_steps
from app.services.runtime import Runtime
from app.services.tenants import create_tenant, get_tenant_by_name
from app.services.videos import ReceivedUpload, register_upload

LOCAL_TENANT = "local"
POLL_S = 0.2


@dataclass(frozen=True, slots=True)
class VideoState:
    """Where a video's preparation stands."""

    status: str
    captions_done: int
    captions_total: int
    error_code: str | None = None
    error: str | None = None


@dataclass
class AskResult:
    """What ``vidnav ask`` reports: the job's outcome, its rounds and where time went."""

    video_id: str
    job_id: str
    status: str
    answer: str | None
    rounds: int
    trace: list[dict[str, Any]]
    timings: dict[str, float]
    summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    recorded: list[TraceRound] = field(default_factory=list)  # the rounds as navigated

    def to_dict(self) -> dict[str, Any]:
        return {
            "answer": self.answer, "status": self.status, "rounds": self.rounds,
            "trace": self.trace, "timings": self.timings, "summary": self.summary,
            "video_id": self.video_id, "job_id": self.job_id, "error": self.error,
        }


OnVideo = Callable[["VideoState"], None]
OnRound = Callable[[int], None]


def ask_local(runtime: Runtime, path: Path, question: str, options: list[str],
              max_rounds: int | None, *, on_video: OnVideo | None = None,
              on_round: OnRound | None = None, started: float | None = None) -> AskResult:
    """Answer ``question`` about the local file ``path``: register it, prepare it, ask,
    wait, and read the finished job back. ``started``: when the caller began (perf
    counter), for ``total_s``."""
    question_text(question, normalize_options(options))  # a typo must not cost an ingest
    began = time.perf_counter() if started is None else started
    tenant_id = local_tenant_id(runtime)
    video_id = register_local_video(runtime, tenant_id, path)
    warm_up(runtime)
    timings = prepare_video(runtime, video_id, on_video)
    job_id, seconds = run_question(runtime, tenant_id, video_id, question, options, max_rounds,
                                   on_round)
    timings["question_s"] = round(seconds, 3)
    timings["total_s"] = round(time.perf_counter() - began, 3)
    return collect_result(runtime, video_id, job_id, timings)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def local_tenant_id(runtime: Runtime) -> uuid.UUID:
    """The tenant local questions are asked for, created on first use."""
    with session_scope(runtime.session_factory) as session:
        try:
            return get_tenant_by_name(session, LOCAL_TENANT).id
        except NotFound:
            tenant, _key = create_tenant(session, LOCAL_TENANT)
            return tenant.id


def register_local_video(runtime: Runtime, tenant_id: uuid.UUID, path: Path) -> uuid.UUID:
    """Register a local file as the tenant's video (the same bytes again: the same video).

    The file is hard-linked into the data directory when it can be (no copy of a large
    file), copied otherwise; the services then own that entry like any upload, and a
    failed registration leaves nothing behind.
    """
    if not path.is_file():
        raise InvalidInput(f"{path} is not a readable file", code="video_not_found")
    settings = runtime.settings
    uploads = settings.data_dir / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    staged = uploads / f"{uuid.uuid4().hex}{path.suffix.lower()}"
    try:
        os.link(path, staged)
    except OSError:
        shutil.copyfile(path, staged)
    upload = ReceivedUpload(path=staged, size=staged.stat().st_size, sha256=file_sha256(staged),
                            filename=path.name)
    undo: list[Callable[[], None]] = []
    try:
        with session_scope(runtime.session_factory) as session:
            video, _created = register_upload(
                session, tenant_id, upload, settings=settings, tree_config=runtime.tree_config,
                caption_mode=settings.caption_mode, on_rollback=undo.append,
            )
            return video.id
    except BaseException:
        for step in undo:
            step()
        raise
    finally:
        upload.discard()


def video_state(runtime: Runtime, video_id: uuid.UUID) -> VideoState:
    with session_scope(runtime.session_factory) as session:
        video = session.get(Video, video_id)
        if video is None:
            raise NotFound("the video was deleted while it was being prepared",
                           code="video_not_found")
        return VideoState(video.status, video.captions_done, video.captions_total,
                          video.error_code, video.error)


class StallGuard:
    """Raises when a watched state stops changing for too long: a task that died without
    recording it (or no worker consuming the queue) must not leave the caller waiting."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.state: object = None
        self.since = time.monotonic()

    def check(self, state: object, limit_s: float) -> None:
        now = time.monotonic()
        if state != self.state:
            self.state, self.since = state, now
        elif now - self.since > limit_s:
            raise VidnavError(
                f"{self.what} made no progress for {limit_s:.0f} s; is a worker running? "
                "(the embedded default runs tasks in this process; see the log above)",
                code="stalled", kind="unavailable",
            )


def warm_up(runtime: Runtime) -> None:
    """Load the policy's model in the background while the video is prepared."""
    warm = getattr(runtime.policy, "warm", None)
    if callable(warm):
        threading.Thread(target=warm, name="vidnav-warm-up", daemon=True).start()


def prepare_video(runtime: Runtime, video_id: uuid.UUID,
                  on_progress: OnVideo | None = None) -> dict[str, float]:
    """Ingest and caption the video ahead (its caption mode decides how much), reporting
    each state seen; returns the seconds spent in each phase."""
    if video_state(runtime, video_id).status != "ready":
        # Idempotent: a video left half-done by an interrupted run picks up where it was.
        runtime.queue.enqueue_ingest(video_id)
    settings = runtime.settings
    started = time.perf_counter()
    ingest_s: float | None = None
    guard = StallGuard("preparing the video")
    while True:
        state = video_state(runtime, video_id)
        if state.status == "failed":
            raise VidnavError(f"the video could not be prepared: {state.error}",
                              code=state.error_code or "video_failed", kind="invalid")
        # Transcribing may take long without a visible change; one caption may not.
        guard.check((state.status, state.captions_done),
                    settings.ffmpeg_timeout_s * 10 + 60
                    if state.status in ("uploaded", "ingesting") else settings.caption_wait_s)
        if state.status in ("captioning", "ready") and ingest_s is None:
            ingest_s = time.perf_counter() - started
        if on_progress is not None:
            on_progress(state)
        if state.status == "ready":
            break
        time.sleep(POLL_S)
    total_s = time.perf_counter() - started
    ingest_s = total_s if ingest_s is None else ingest_s
    return {"ingest_s": round(ingest_s, 3), "captioning_s": round(total_s - ingest_s, 3)}


def run_question(runtime: Runtime, tenant_id: uuid.UUID, video_id: uuid.UUID, question: str,
                 options: list[str], max_rounds: int | None,
                 on_round: OnRound | None = None) -> tuple[uuid.UUID, float]:
    """Create the job, hand it to the queue and wait until it finishes; returns the job's
    id and the seconds it took. ``on_round`` gets the round count as it grows."""
    with session_scope(runtime.session_factory) as session:
        job, _created = create_job(
            session, tenant_id, video_id,
            QuestionInput(question=question, options=tuple(options) or None,
                          budgets={"max_rounds": max_rounds} if max_rounds else None),
            runtime.settings,
        )
        job_id = job.id
    started = time.perf_counter()
    runtime.queue.enqueue_navigate(job_id)
    settings = runtime.settings
    guard = StallGuard("the question")
    round_limit = settings.caption_wait_s + settings.model_timeout_s * (settings.model_retries + 1)
    while True:
        with session_scope(runtime.session_factory) as session:
            row = session.get(Job, job_id)
            status, rounds = (row.status, row.progress_round) if row else ("failed", 0)
        guard.check((status, rounds), round_limit)
        if on_round is not None:
            on_round(rounds)
        if status in FINISHED_JOB_STATUSES:
            break
        time.sleep(POLL_S)
    return job_id, time.perf_counter() - started


def collect_result(runtime: Runtime, video_id: uuid.UUID, job_id: uuid.UUID,
                   timings: dict[str, float]) -> AskResult:
    """The finished job and its trace steps, as ``vidnav ask`` reports them."""
    with session_scope(runtime.session_factory) as session:
        job = session.get(Job, job_id)
        if job is None:
            raise NotFound("the job disappeared", code="job_not_found")
        rows = trace_steps(session, job_id)
        steps = [_step(row.round_index, row.kind, row.start_s, row.end_s, row.payload)
                 for row in rows]
        return AskResult(
            video_id=str(video_id), job_id=str(job_id), status=job.status, answer=job.answer,
            rounds=len(steps), trace=steps, timings=timings,
            summary=dict(job.summary or {}),  # the trace summary, outcome and stop reason
            error=job.error, recorded=[TraceRound.from_dict(row.payload) for row in rows],
        )


def step_text(step: dict[str, Any]) -> str:
    """What a step found, as a reader wants it: the caption or video_qa answer the tool
    returned (the CPU captioner's span sentence left out: the step shows its span)."""
    text = step.get("tool_output") or step.get("observation") or ""
    return without_clip_intro(" ".join(text.split()))


def _step(index: int, kind: str, start: float | None, end: float | None,
          payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "round": index, "kind": kind, "node": list(payload.get("node") or []) or None,
        "start": start, "end": end, "query": payload.get("query"),
        "think": payload.get("think"), "observation": payload.get("observation"),
        "tool_output": payload.get("tool_output"),
    }
