"""What the dashboard's pages show, as plain JSON-ready data, tenant-scoped.

The job view is the one the job page renders and the static export inlines: the job, its
video, the tree's three levels with their time spans, every caption written for the
video, the rounds (in the shape of the trace API and the SSE stream, so live rounds merge
in), and, for an evaluation item, its score.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.scoring import score
from app.core.tree import LEVELS, TreeConfig, VideoGeometry, node_key
from app.db.models import FINISHED_JOB_STATUSES, CaptionNode, Job, TraceStep, Video
from app.services import jobs, videos


def iso(value: datetime | None) -> str | None:
    """A stored time as ISO 8601 UTC (SQLite hands back naive UTC datetimes)."""
    if value is None:
        return None
    return (value.replace(tzinfo=UTC) if value.tzinfo is None else value).isoformat()


def model_seconds(summary: dict[str, Any] | None) -> float | None:
    """Model seconds of every role together, from a finished job's trace summary."""
    if not summary or not isinstance(summary.get("roles"), dict):
        return None
    return sum(float(role.get("model_seconds") or 0.0) for role in summary["roles"].values()
               if isinstance(role, dict))


def job_fields(job: Job) -> dict[str, Any]:
    """The job as its page needs it (the names of the API's Job, which SSE results carry)."""
    error = ({"code": job.error_code or "error", "message": job.error or ""}
             if job.error_code or job.error else None)
    return {
        "id": str(job.id), "video_id": str(job.video_id), "status": job.status,
        "question": job.question, "options": job.options, "budgets": job.budgets,
        "rounds": job.progress_round, "answer": job.answer, "error": error,
        "summary": job.summary, "reference": job.reference,
        "created_at": iso(job.created_at), "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
    }


def video_fields(video: Video) -> dict[str, Any]:
    probe = video.probe or {}
    return {
        "id": str(video.id), "name": video.original_name, "status": video.status,
        "duration_s": video.duration_s, "width": probe.get("width"),
        "height": probe.get("height"), "tree_width": video.tree_width,
        "caption_mode": video.caption_mode,
        "captions": {"done": video.captions_done, "total": video.captions_total},
        "error": ({"code": video.error_code or "error", "message": video.error}
                  if video.error else None),
        "created_at": iso(video.created_at),
    }


def round_fields(step: TraceStep) -> dict[str, Any]:
    """A persisted round in the trace API's shape."""
    return {"index": step.round_index, "kind": step.kind, "node_key": step.node_key,
            "start_s": step.start_s, "end_s": step.end_s, "round": step.payload,
            "created_at": iso(step.created_at)}


def tree_levels(video: Video, tree_config: TreeConfig) -> dict[str, Any] | None:
    """Every node of the three levels with its time span, or None before the probe."""
    if not video.num_frames or not video.fps:
        return None
    geometry = VideoGeometry(video.num_frames, video.fps, tree_config)
    levels = []
    for level in LEVELS:
        nodes = []
        for node in geometry.iter_nodes(level):
            start, end = geometry.seconds(node)
            nodes.append({"key": node_key(node), "start_s": start, "end_s": end})
        levels.append(nodes)
    return {"width": geometry.width, "duration_s": geometry.duration, "levels": levels}


def video_captions(session: Session, video: Video, level: int | None = None) -> dict[str, str]:
    """The captions written so far for the video's content under its caption version."""
    if not video.captioner_version:
        return {}
    query = select(CaptionNode.node_key, CaptionNode.caption).where(
        CaptionNode.content_sha256 == video.sha256,
        CaptionNode.config_version == video.captioner_version)
    if level is not None:
        query = query.where(CaptionNode.level == level)
    return {key: caption for key, caption in session.execute(query)}


def evaluation(job: Job, steps: Sequence[TraceStep]) -> dict[str, Any] | None:
    """An evaluation item's truth and, once the job has ended, its score: answer match,
    localization of the get_caption calls against the clues (as ``score_trace``), reward."""
    reference = job.reference
    if not reference:
        return None
    truth = reference.get("answer")
    clues = [list(c) for c in reference.get("clues") or []]
    result: dict[str, Any] = {"truth": truth, "clues": clues, "scored": False}
    if job.status not in FINISHED_JOB_STATUSES:
        return result
    visited = [(s.node_key, (s.start_s, s.end_s)) for s in steps
               if s.kind == "get_caption" and s.start_s is not None and s.end_s is not None]
    got = score(predicted=job.answer, truth=truth or "", visited=visited, clues=clues)
    result.update(scored=True, correct=bool(got.answer) if truth is not None else None,
                  coverage=got.coverage, precision=got.precision, f1=got.f1,
                  repeat=got.repeat, reward=got.total)
    return result


def job_view(session: Session, tenant_id: uuid.UUID, job_id: uuid.UUID,
             tree_config: TreeConfig) -> dict[str, Any]:
    """Everything the job page shows (another tenant's job is not found)."""
    job = jobs.get_job(session, tenant_id, job_id)
    video = jobs.video_of(session, job)
    steps = jobs.trace_steps(session, job.id)
    return {
        "job": job_fields(job), "video": video_fields(video),
        "tree": tree_levels(video, tree_config), "captions": video_captions(session, video),
        "rounds": [round_fields(s) for s in steps], "evaluation": evaluation(job, steps),
    }


def jobs_overview(session: Session, tenant_id: uuid.UUID, *, status: str | None = None,
                  video_id: uuid.UUID | None = None, limit: int = 100,
                  cursor: str | None = None) -> dict[str, Any]:
    """The jobs page: newest jobs first (or those older than ``cursor``) with their video's
    name and model seconds; ``next`` is the cursor of the older page, if there is one."""
    rows, next_cursor = jobs.list_jobs(session, tenant_id, status=status, video_id=video_id,
                                       limit=limit, cursor=cursor)
    names = dict(session.execute(select(Video.id, Video.original_name).where(
        Video.tenant_id == tenant_id, Video.id.in_({j.video_id for j in rows}))).all())
    items = []
    for job in rows:
        item = job_fields(job)
        item.pop("summary")
        item["video_name"] = names.get(job.video_id)
        item["model_seconds"] = model_seconds(job.summary)
        items.append(item)
    return {"items": items, "more": next_cursor is not None, "next": next_cursor}


def videos_overview(session: Session, tenant_id: uuid.UUID, limit: int = 200
                    ) -> list[dict[str, Any]]:
    return [video_fields(v) for v in videos.list_videos(session, tenant_id, limit=limit)]


def video_view(session: Session, tenant_id: uuid.UUID, video_id: uuid.UUID,
               tree_config: TreeConfig) -> dict[str, Any]:
    """The video page: the video, the tree's two top levels with the captions written so
    far (each high node with its medium children), and its jobs."""
    video = videos.get_video(session, tenant_id, video_id)
    levels = tree_levels(video, tree_config)
    captions = video_captions(session, video)
    nodes = []
    if levels is not None:
        high, medium = levels["levels"][0], levels["levels"][1]
        for node in high:
            children = [{**child, "caption": captions.get(child["key"])} for child in medium
                        if child["key"].split(",")[0] == node["key"]]
            nodes.append({**node, "caption": captions.get(node["key"]), "children": children})
    overview = jobs_overview(session, tenant_id, video_id=video.id, limit=50)
    return {"video": video_fields(video), "jobs": overview["items"],
            "tree": {"width": levels["width"] if levels else video.tree_width, "nodes": nodes}}
