"""One video as captioning and navigation see it (``VideoContext``), read once from its rows."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from app.core.ports import NodeId, SubtitleLine
from app.core.tree import VideoGeometry, node_key
from app.db.models import Subtitle, Video
from app.db.session import session_scope
from app.errors import NotFound, Unavailable
from app.media.frames import FrameReader
from app.media.probe import StreamInfo, VideoProbe
from app.models.base import NodeFrames
from app.services.cache import cache_key, caption_version, subtitle_digest
from app.services.runtime import Runtime

# Which subtitle track captions are written with when a video has several.
_TRACK_PREFERENCE = {"upload": 0, "embedded": 1, "transcript": 2}


def probe_from_dict(data: dict[str, Any]) -> VideoProbe:
    """The ``VideoProbe`` stored on a video row (``VideoProbe.to_dict``) back as an object."""
    fields = {f.name for f in dataclasses.fields(VideoProbe)}
    values = {k: v for k, v in data.items() if k in fields}
    for name in ("audio_streams", "subtitle_streams"):
        values[name] = tuple(StreamInfo(**s) for s in values.get(name) or ())
    return VideoProbe(**values)


def pick_subtitles(rows: Iterable[Subtitle]) -> tuple[SubtitleLine, ...]:
    """The one subtitle track captions use: uploaded, then embedded, then a transcript."""
    ranked = sorted(rows, key=lambda s: (_TRACK_PREFERENCE.get(s.source, 9), s.created_at))
    if not ranked:
        return ()
    lines = [SubtitleLine(float(a), float(b), str(t)) for a, b, t in ranked[0].lines or []]
    return tuple(sorted(lines, key=lambda line: (line.start, line.end)))


@dataclass
class VideoContext:
    """What captioning and navigating one video need, read once from its rows."""

    video_id: uuid.UUID
    sha256: str
    path: Path
    mode: str
    status: str
    geometry: VideoGeometry
    subtitles: tuple[SubtitleLine, ...]
    version: str
    reader: FrameReader

    @property
    def version_key(self) -> tuple[str, str]:
        return self.sha256, self.version

    def key(self, node: NodeId) -> str:
        return cache_key(self.sha256, self.version, node_key(node))

    def subtitles_between(self, start: float, end: float) -> tuple[SubtitleLine, ...]:
        return tuple(s for s in self.subtitles if s.end >= start and s.start <= end)

    def node_frames(self, node: NodeId, indices: Sequence[int], images: Sequence[Any],
                    level: int) -> NodeFrames:
        span = self.geometry.seconds(node)
        times = tuple(self.geometry.time_label(i) for i in indices)
        return NodeFrames(
            node=node, level=level, frame_indices=tuple(indices), frame_times=times,
            images=tuple(images), span=span,
            subtitles=self.subtitles_between(min(span[0], times[0]), max(span[1], times[-1])),
            video_path=self.path,
        )


def load_video_context(runtime: Runtime, video_id: uuid.UUID, *,
                       read_workers: int | None = None) -> VideoContext:
    """Read a probed video and its subtitles; the caption version follows the current
    captioner, so a changed captioner config never reads captions written under another.
    ``read_workers``: the frame reader's parallel passes (its default when None; a caption
    batch wants ``batch_read_workers()``)."""
    with session_scope(runtime.session_factory) as session:
        video = session.get(Video, video_id)
        if video is None:
            raise NotFound(f"video {video_id} does not exist", code="video_not_found")
        if video.probe is None or not video.num_frames or not video.fps:
            raise Unavailable(f"video {video_id} has not been probed yet",
                              code="video_not_ingested")
        subtitles = pick_subtitles(
            session.scalars(select(Subtitle).where(Subtitle.video_id == video_id)))
        version = caption_version(
            runtime.captioner.config_version,
            subtitle_digest([[s.start, s.end, s.text] for s in subtitles]))
        if video.captioner_version != version:
            video.captioner_version = version
        probe = probe_from_dict(video.probe)
        path = Path(video.storage_path)
        ctx = VideoContext(
            video_id=video.id, sha256=video.sha256, path=path, mode=video.caption_mode,
            status=video.status,
            geometry=VideoGeometry(int(video.num_frames), float(video.fps), runtime.tree_config),
            subtitles=subtitles, version=version,
            reader=FrameReader(path, probe, timeout_s=runtime.settings.ffmpeg_timeout_s,
                               workers=read_workers),
        )
    return ctx


def read_node_frames(ctx: VideoContext, node: NodeId) -> NodeFrames:
    """Decode the frames a node's caption is written from (blocking: run in a thread)."""
    level = len(node)
    indices = ctx.geometry.sample_frames(node)
    images = ctx.reader.read(indices, ctx.geometry.max_side(level))
    return ctx.node_frames(node, indices, images, level)
