"""Caption rows in the database: read, written in batches (each key once), and the video's
progress and failure recorded from them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.core.ports import ModelUsage, NodeId
from app.core.tree import node_key
from app.db.base import utcnow
from app.db.models import CaptionNode, Video
from app.db.session import session_scope
from app.db.upsert import insert_or_skip
from app.errors import NotFound
from app.models.base import NodeFrames
from app.services.cache import CachedCaption
from app.services.captions.context import VideoContext
from app.services.captions.modes import levels_ahead
from app.services.runtime import Runtime


def read_rows(runtime: Runtime, ctx: VideoContext, keys: Sequence[str]
              ) -> dict[str, CachedCaption]:
    """The stored captions of ``keys`` (node keys) under the video's caption version."""
    if not keys:
        return {}
    with runtime.engine.connect() as conn:
        rows = conn.execute(
            select(CaptionNode.node_key, CaptionNode.caption, CaptionNode.frame_times).where(
                CaptionNode.content_sha256 == ctx.sha256,
                CaptionNode.config_version == ctx.version,
                CaptionNode.node_key.in_(list(keys)),
            )
        ).all()
    return {k: CachedCaption(c, tuple(float(t) for t in ft)) for k, c, ft in rows}


def row_values(ctx: VideoContext, node: NodeId, frames: NodeFrames, caption: str,
               raw_reply: str, usage: ModelUsage) -> dict[str, Any]:
    """The ``caption_nodes`` row of a freshly generated caption."""
    start, stop = ctx.geometry.frame_range(node)
    return {
        "id": uuid.uuid4(), "content_sha256": ctx.sha256, "config_version": ctx.version,
        "node_key": node_key(node), "level": len(node), "first_frame": start,
        "last_frame": max(start, stop - 1), "frame_times": list(frames.frame_times),
        "caption": caption, "raw_reply": raw_reply, "model": usage.model,
        "model_seconds": usage.seconds, "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens, "created_at": utcnow(),
    }


def insert_rows(runtime: Runtime, ctx: VideoContext, rows: Sequence[dict[str, Any]]
                ) -> dict[str, CachedCaption]:
    """Insert caption rows, skipping keys that already have one (a retried or duplicated
    task); return each key's stored caption, ours or the one that was there first."""
    statement = insert_or_skip(
        CaptionNode, runtime.engine.dialect.name,
        ("content_sha256", "config_version", "node_key"),
    ).returning(CaptionNode.node_key)
    with runtime.engine.begin() as conn:
        inserted = set(conn.execute(statement, list(rows)).scalars())
    stored = {r["node_key"]: CachedCaption(r["caption"], tuple(r["frame_times"]))
              for r in rows if r["node_key"] in inserted}
    lost = [r["node_key"] for r in rows if r["node_key"] not in inserted]
    stored.update(read_rows(runtime, ctx, lost))
    return stored


class RowWriter:
    """Writes the caption rows of one video in batches: whatever finished while the last
    write was in flight goes in the next single statement, so sixteen captions completing
    together cost one round trip, not sixteen."""

    def __init__(self, runtime: Runtime, ctx: VideoContext) -> None:
        self.runtime = runtime
        self.ctx = ctx
        self._pending: list[tuple[dict[str, Any], asyncio.Future[CachedCaption]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def write(self, row: dict[str, Any]) -> CachedCaption:
        future: asyncio.Future[CachedCaption] = asyncio.get_running_loop().create_future()
        self._pending.append((row, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                stored = await asyncio.to_thread(
                    insert_rows, self.runtime, self.ctx, [row for row, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                        future.exception()  # retrieved; the writer's caller re-raises it
                continue
            for row, future in batch:
                if not future.done():
                    future.set_result(stored[row["node_key"]])


def update_progress(session: Session, video_id: uuid.UUID) -> tuple[int, int, str]:
    """Recount the video's captions of the levels its mode captions ahead; mark it ready
    when all are there. Counting rows (not adding) keeps retries and duplicates honest."""
    video = session.get(Video, video_id, with_for_update=True)
    if video is None:
        raise NotFound(f"video {video_id} does not exist", code="video_not_found")
    levels = levels_ahead(video.caption_mode)
    done = 0
    if levels and video.captioner_version:
        done = session.scalar(
            select(func.count()).select_from(CaptionNode).where(
                CaptionNode.content_sha256 == video.sha256,
                CaptionNode.config_version == video.captioner_version,
                CaptionNode.level.in_(levels),
            )
        ) or 0
    video.captions_done = min(done, video.captions_total)
    if video.status == "captioning" and video.captions_done >= video.captions_total:
        video.status = "ready"
    return video.captions_done, video.captions_total, video.status


def fail_video(runtime: Runtime, video_id: uuid.UUID, code: str, message: str) -> None:
    """Mark the video failed with a reason a user can act on (unless it is ready)."""
    with session_scope(runtime.session_factory) as session:
        session.execute(
            update(Video).where(Video.id == video_id, Video.status != "ready")
            .values(status="failed", error_code=code, error=message)
        )
