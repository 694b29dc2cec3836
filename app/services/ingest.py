"""The ingest task: probe an uploaded video, size its tree, find its subtitles, then hand it
to the caption queue. Idempotent: a redelivered task finds the work done and only makes
sure the captions are scheduled."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy import select

from app.core.ports import SubtitleLine
from app.core.tree import VideoGeometry
from app.db.models import Subtitle, Video
from app.db.session import session_scope
from app.errors import VidnavError
from app.media.probe import VideoProbe, probe_video
from app.services import leases
from app.services.captions import fail_video, probe_from_dict, scheduled_nodes
from app.services.runtime import Runtime
from app.services.thumbnails import ensure_thumbnails

logger = logging.getLogger(__name__)


def ingest_video(runtime: Runtime, video_id: uuid.UUID, *, final_attempt: bool = True) -> None:
    """Probe, build the tree, read subtitles or transcribe, schedule the captions, then
    make the node thumbnails."""
    settings = runtime.settings
    with session_scope(runtime.session_factory) as session:
        video = session.get(Video, video_id)
        if video is None:
            logger.info("ingest task for missing video %s dropped", video_id)
            return
        stored_probe = video.probe if video.num_frames and video.fps else None
        if video.status in ("captioning", "ready", "failed"):
            status, path = video.status, None
        elif video.status == "ingesting" and leases.held(video.lease_expires_at):
            logger.info("ingest task for video %s dropped: another task holds it", video_id)
            return
        else:
            status, path = video.status, video.storage_path
            video.status = "ingesting"
            video.attempts += 1
            video.lease_expires_at = leases.deadline(settings)
    if status == "captioning":
        # A crash between the commit and the enqueue below must not strand the video
        # (and the reconciler resends a lapsed caption task through here).
        leases.renew_video(runtime, video_id)
        runtime.queue.enqueue_caption(video_id, None)
        return
    if path is None:
        return

    with leases.Heartbeat(runtime, lambda: leases.renew_video(runtime, video_id)):
        _ingest(runtime, video_id, path, stored_probe)


def _ingest(runtime: Runtime, video_id: uuid.UUID, path: str,
            stored_probe: dict[str, Any] | None) -> None:
    settings = runtime.settings
    try:
        if stored_probe is not None:
            probe = probe_from_dict(stored_probe)  # the upload already probed it
        else:
            probe = probe_video(path, max_duration_s=settings.max_video_duration_s,
                                max_pixels=settings.max_video_pixels,
                                timeout_s=settings.ffprobe_timeout_s)
        geometry = VideoGeometry(probe.num_frames, probe.fps, runtime.tree_config)
        track = _find_subtitles(runtime, video_id, probe)
    except VidnavError as exc:
        fail_video(runtime, video_id, exc.code, exc.message)
        logger.warning("ingest of video %s failed: %s", video_id, exc.message)
        return

    with session_scope(runtime.session_factory) as session:
        video = session.get(Video, video_id)
        if video is None:
            return
        if track is not None:
            session.add(Subtitle(video_id=video_id, **track))
        video.probe = probe.to_dict()
        video.duration_s = probe.duration_s
        video.num_frames = probe.num_frames
        video.fps = probe.fps
        video.tree_width = geometry.width
        video.captions_total = len(scheduled_nodes(geometry, video.caption_mode))
        video.captions_done = 0
        video.status = "captioning" if video.captions_total else "ready"
        # The caption task owns it now: its own start counts from zero.
        video.attempts = 0
        video.lease_expires_at = leases.deadline(settings)
        ahead = video.captions_total > 0
    if ahead:
        runtime.queue.enqueue_caption(video_id, None)
    ensure_thumbnails(settings, runtime.tree_config, video_id, path, probe)


def _find_subtitles(runtime: Runtime, video_id: uuid.UUID, probe: VideoProbe
                    ) -> dict[str, Any] | None:
    """A subtitle track to store, unless the video already has one: the container's own
    subtitles first, else a speech transcript when transcription is on."""
    with session_scope(runtime.session_factory) as session:
        if session.scalars(select(Subtitle.id).where(Subtitle.video_id == video_id)).first():
            return None
    if probe.subtitle_streams:
        track = _embedded_track(probe)
        if track is not None:
            return track
    if runtime.settings.should_transcribe and probe.has_audio:
        return _transcript_track(runtime, probe)
    return None


def _embedded_track(probe: VideoProbe) -> dict[str, Any] | None:
    from app.media.subtitles import extract_embedded_subtitles

    lines = extract_embedded_subtitles(probe.path, probe)
    return _track("embedded", "srt", lines)


def _transcript_track(runtime: Runtime, probe: VideoProbe) -> dict[str, Any] | None:
    # Imported here: the speech model is heavy and most deployments never load it.
    from app.media import speech

    lines = speech.transcribe(probe.path, timeout_s=runtime.settings.ffmpeg_timeout_s * 10)
    return _track("transcript", "whisper", lines)


def _track(source: str, fmt: str, lines: list[SubtitleLine]) -> dict[str, Any] | None:
    if not lines:
        return None
    return {"source": source, "format": fmt, "language": None,
            "lines": [[line.start, line.end, line.text] for line in lines]}
