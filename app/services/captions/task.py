"""The caption task: caption what a video's mode schedules ahead (or given nodes) and keep
the video's progress."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Sequence

from sqlalchemy import update

from app.core.tree import parse_node_key
from app.db.models import Video
from app.db.session import session_scope
from app.errors import NotFound, VidnavError
from app.services.captions.batch import batch_read_workers, caption_batch
from app.services.captions.context import load_video_context
from app.services.captions.modes import scheduled_nodes
from app.services.captions.obtain import CaptionerFailed
from app.services.captions.storage import fail_video, update_progress
from app.services.leases import Heartbeat, deadline, renew_video
from app.services.queue import RetryLater
from app.services.runtime import Runtime

logger = logging.getLogger(__name__)


def caption_nodes(runtime: Runtime, video_id: uuid.UUID, node_keys: Sequence[str] | None = None,
                  *, final_attempt: bool = True) -> None:
    """Caption ``node_keys`` (None: what the video's mode captions ahead) and keep the
    video's progress; a captioner that stays down fails the video."""
    try:
        ctx = load_video_context(runtime, video_id, read_workers=batch_read_workers())
    except NotFound:
        logger.info("caption task for missing video %s dropped", video_id)
        return
    if ctx.status == "failed":
        return
    if node_keys is None:
        nodes = scheduled_nodes(ctx.geometry, ctx.mode)
    else:
        nodes = [ctx.geometry.validate(parse_node_key(k)) for k in node_keys]
    ahead = node_keys is None

    def progress() -> None:
        with session_scope(runtime.session_factory) as session:
            update_progress(session, video_id)

    if ahead:
        _claim(runtime, video_id)
    try:
        beat = Heartbeat(runtime, lambda: renew_video(runtime, video_id)) if ahead else None
        with beat or contextlib.nullcontext():
            runtime.run(caption_batch(runtime, ctx, nodes,
                                      on_progress=progress if ahead else None))
    except CaptionerFailed as exc:
        if not final_attempt:
            raise RetryLater(exc.message, failure=True) from exc
        _give_up(runtime, video_id, ahead, exc)
        return
    except VidnavError as exc:
        _give_up(runtime, video_id, ahead, exc)
        return
    if ahead:
        progress()


def _give_up(runtime: Runtime, video_id: uuid.UUID, ahead: bool, exc: VidnavError) -> None:
    """Record why captioning stopped: on the video when it was its scheduled captions (a
    question's own caption failures are reported on the job instead)."""
    logger.error("captioning video %s failed: %s", video_id, exc.message)
    if ahead:
        fail_video(runtime, video_id, exc.code, exc.message)


def _claim(runtime: Runtime, video_id: uuid.UUID) -> None:
    """Count this start of the captions ahead and take the video's lease."""
    with session_scope(runtime.session_factory) as session:
        session.execute(
            update(Video).where(Video.id == video_id, Video.status == "captioning")
            .values(attempts=Video.attempts + 1,
                    lease_expires_at=deadline(runtime.settings)))
