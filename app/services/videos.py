"""Videos: streaming upload (hashed and size-checked on the way to disk), probe, list, delete.

An upload never sits whole in memory: the multipart body is parsed incrementally, written to
a temp file under ``data_dir/uploads`` and hashed as it streams; passing the size limit or the
tenant's remaining quota aborts it at once, leaving neither file nor row behind.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from anyio import to_thread
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from streaming_form_data import StreamingFormDataParser
from streaming_form_data.parser import ParseFailedException
from streaming_form_data.targets import BaseTarget, ValueTarget

from app.core.tree import TreeConfig, VideoGeometry, node_key
from app.db.models import CaptionNode, Job, Subtitle, Video
from app.errors import InsufficientStorage, InvalidInput, NotFound, VidnavError
from app.settings import CAPTION_MODES, CaptionMode, Settings

PARSE_BATCH_BYTES = 1 << 20  # hand the parser ~1 MiB at a time: few thread hops, little memory
_SAFE_EXT = re.compile(r"^\.[a-z0-9]{1,8}$")


class UploadTooLarge(VidnavError):
    code = "upload_too_large"
    kind = "too_large"


class UnsupportedUpload(VidnavError):
    code = "unsupported_media_type"
    kind = "unsupported"


class _HashingFileTarget(BaseTarget):  # type: ignore[misc]
    """Writes one multipart file part to disk, hashing and counting it; stops past the limit."""

    def __init__(self, fh: BinaryIO, limit: int) -> None:
        super().__init__()
        self.fh = fh
        self.limit = limit
        self.size = 0
        self.sha256 = hashlib.sha256()
        self.exceeded = False
        self.parts = 0  # more than one: the client sent several parts of this name
        self.complete = False  # the part's closing boundary arrived

    @property
    def seen(self) -> bool:
        return self.parts > 0

    def on_start(self) -> None:
        self.parts += 1

    def on_finish(self) -> None:
        self.complete = True

    def on_data_received(self, chunk: bytes) -> None:
        if self.exceeded or self.parts > 1:
            return
        self.size += len(chunk)
        if self.size > self.limit:
            self.exceeded = True
            return
        self.sha256.update(chunk)
        self.fh.write(chunk)


@dataclass
class ReceivedUpload:
    """A complete upload in a temp file (the caller moves or removes it)."""

    path: Path
    size: int
    sha256: str
    filename: str
    fields: dict[str, str] = field(default_factory=dict)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass(frozen=True, slots=True)
class UploadLimit:
    """How many bytes this upload may have, and which error passing it raises.

    ``quota_left`` is the tenant's quota minus its stored videos, before counting uploads
    in flight (which ``check_in_flight`` adds as they stream).
    """

    max_bytes: int
    code: str
    message: str
    quota_left: int

    def check_target(self, exceeded: bool) -> None:
        """Refuse the upload once its own bytes passed ``max_bytes``."""
        if exceeded:
            raise UploadTooLarge(self.message, code=self.code,
                                 details={"limit_bytes": self.max_bytes})

    def check_in_flight(self, size: int, others_in_flight: int) -> None:
        """Refuse this upload once it and the tenant's other running uploads pass the quota."""
        if size + others_in_flight > self.quota_left:
            raise UploadTooLarge(
                "the upload and the tenant's other uploads in progress exceed its remaining "
                f"quota of {self.quota_left} bytes", code="upload_quota_exceeded",
                details={"limit_bytes": self.quota_left, "in_flight_bytes": others_in_flight},
            )


def upload_limit(session: Session, tenant_id: uuid.UUID, tenant_quota: int | None,
                 settings: Settings) -> UploadLimit:
    """The tighter of the per-file size limit and what is left of the tenant's quota."""
    quota = tenant_quota if tenant_quota is not None else settings.upload_quota_bytes
    used = session.scalar(
        select(func.coalesce(func.sum(Video.size_bytes), 0)).where(Video.tenant_id == tenant_id)
    ) or 0
    left = max(0, quota - int(used))
    if left < settings.max_upload_bytes:
        return UploadLimit(left, "upload_quota_exceeded",
                           f"the upload exceeds the tenant's remaining quota of {left} bytes",
                           left)
    return UploadLimit(settings.max_upload_bytes, "upload_too_large",
                       f"the upload exceeds the limit of {settings.max_upload_bytes} bytes", left)


async def receive_upload(
    chunks: AsyncIterator[bytes], content_type: str | None, uploads_dir: Path,
    limit: UploadLimit, *, file_field: str = "file", value_fields: tuple[str, ...] = (),
    on_progress: Callable[[int], None] | None = None,
) -> ReceivedUpload:
    """Stream a multipart body into a temp file; raise UploadTooLarge the moment it is too big.

    ``on_progress(bytes_so_far)`` runs in a worker thread after each batch (it may raise).
    """
    if not content_type or not content_type.lower().startswith("multipart/form-data"):
        raise UnsupportedUpload("upload the video as multipart/form-data with a 'file' field")
    uploads_dir.mkdir(parents=True, exist_ok=True)
    path = uploads_dir / f"{uuid.uuid4().hex}.part"
    fh = path.open("wb")
    try:
        try:
            parser = StreamingFormDataParser(headers={"Content-Type": content_type})
        except ParseFailedException as exc:
            raise InvalidInput(f"bad multipart body: {exc}", code="invalid_multipart") from exc
        target = _HashingFileTarget(fh, limit.max_bytes)
        parser.register(file_field, target)
        values = {name: ValueTarget() for name in value_fields}
        for name, value_target in values.items():
            parser.register(name, value_target)

        def feed(data: bytes) -> None:
            try:
                parser.data_received(data)
            except ParseFailedException as exc:
                raise InvalidInput(f"bad multipart body: {exc}", code="invalid_multipart") from exc
            except UnicodeDecodeError:
                # Part headers (a file name) that are not UTF-8.
                raise InvalidInput("bad multipart body: a part header is not UTF-8",
                                   code="invalid_multipart") from None
            if target.parts > 1:
                raise InvalidInput(f"the multipart body has more than one {file_field!r} part; "
                                   "upload one video per request", code="invalid_multipart")
            if on_progress is not None and not target.exceeded:
                on_progress(target.size)

        pending: list[bytes] = []
        pending_size = 0
        async for chunk in chunks:
            pending.append(chunk)
            pending_size += len(chunk)
            if pending_size >= PARSE_BATCH_BYTES:
                await to_thread.run_sync(feed, b"".join(pending))
                pending, pending_size = [], 0
                limit.check_target(target.exceeded)
        if pending:
            await to_thread.run_sync(feed, b"".join(pending))
        limit.check_target(target.exceeded)
        if not target.seen:
            raise InvalidInput(f"the multipart body has no {file_field!r} file field",
                               code="missing_file")
        if not target.complete:
            # The body stopped inside the file: what arrived is a truncated upload.
            raise InvalidInput(f"the multipart body ends inside the {file_field!r} part "
                               "(no closing boundary): the upload is incomplete",
                               code="invalid_multipart")
        fh.close()
        fields = {
            name: value_target.value.decode("utf-8", "replace")
            for name, value_target in values.items() if value_target.value
        }
        return ReceivedUpload(path, target.size, target.sha256.hexdigest(),
                              target.multipart_filename or "upload", fields)
    except BaseException as exc:
        with contextlib.suppress(OSError):  # closing flushes, which a full disk refuses
            fh.close()
        path.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise InsufficientStorage(
                "the server has no room left to store this upload; try again later") from None
        raise


def parse_caption_mode(value: str | None, settings: Settings) -> CaptionMode:
    if value is None or value == "":
        return settings.caption_mode
    for mode in CAPTION_MODES:
        if value == mode:
            return mode
    raise InvalidInput(f"caption_mode must be one of {', '.join(CAPTION_MODES)}",
                       code="invalid_caption_mode", details={"caption_mode": value})


def display_name(filename: str) -> str:
    """The client's file name as stored and shown: printable characters only, bounded."""
    name = "".join(ch for ch in filename if ch.isprintable()).strip()
    return name[:500] or "upload"


def _extension(filename: str) -> str:
    ext = Path(filename).suffix.lower()
    return ext if _SAFE_EXT.match(ext) else ".bin"


def register_upload(
    session: Session, tenant_id: uuid.UUID, upload: ReceivedUpload, *, settings: Settings,
    tree_config: TreeConfig, caption_mode: CaptionMode,
    on_rollback: Callable[[Callable[[], None]], None],
) -> tuple[Video, bool]:
    """Probe the upload and store it as a video; returns (video, created).

    The same bytes uploaded again by the same tenant return the existing video (and its
    captions, keyed by content); the temp file is then removed. Bad media raises MediaError.
    """
    try:
        existing = _find_by_sha(session, tenant_id, upload.sha256)
        if existing is not None:
            return existing, False
        from app.media.ffmpeg import MediaError
        from app.media.probe import check_complete, probe_video

        try:
            probe = probe_video(
                upload.path, max_duration_s=settings.max_video_duration_s,
                max_pixels=settings.max_video_pixels, timeout_s=settings.ffprobe_timeout_s,
            )
            # A stored upload must be whole: a cut-off file would fail only when captioned.
            check_complete(probe, timeout_s=settings.ffprobe_timeout_s)
        except MediaError as exc:
            exc.details.pop("path", None)  # the temp file's name means nothing to the client
            raise
        geometry = VideoGeometry(probe.num_frames, probe.fps, tree_config)
        video_id = uuid.uuid4()
        folder = settings.videos_dir / str(video_id)
        folder.mkdir(parents=True, exist_ok=True)
        dest = folder / f"source{_extension(upload.filename)}"
        os.replace(upload.path, dest)
        on_rollback(lambda: shutil.rmtree(folder, ignore_errors=True))
        probe_data = probe.to_dict()
        probe_data["path"] = str(dest)
        video = Video(
            id=video_id, tenant_id=tenant_id, sha256=upload.sha256,
            original_name=display_name(upload.filename), size_bytes=upload.size,
            storage_path=str(dest), status="uploaded", probe=probe_data,
            duration_s=probe.duration_s, num_frames=probe.num_frames, fps=probe.fps,
            tree_width=geometry.width, caption_mode=caption_mode,
        )
        session.add(video)
        try:
            with session.begin_nested():
                session.flush()
        except IntegrityError:
            # The same bytes finished uploading concurrently: keep the first one.
            shutil.rmtree(folder, ignore_errors=True)
            existing = _find_by_sha(session, tenant_id, upload.sha256)
            if existing is None:
                raise
            return existing, False
        return video, True
    finally:
        upload.discard()


def _find_by_sha(session: Session, tenant_id: uuid.UUID, sha256: str) -> Video | None:
    return session.scalar(
        select(Video).where(Video.tenant_id == tenant_id, Video.sha256 == sha256)
    )


def get_video(session: Session, tenant_id: uuid.UUID, video_id: uuid.UUID) -> Video:
    """The tenant's video; another tenant's id is simply not found."""
    video = session.scalar(
        select(Video).where(Video.id == video_id, Video.tenant_id == tenant_id)
    )
    if video is None:
        raise NotFound("no such video", code="video_not_found", details={"video_id": str(video_id)})
    return video


def list_videos(
    session: Session, tenant_id: uuid.UUID, *, status: str | None = None, limit: int = 50,
    offset: int = 0,
) -> list[Video]:
    query = select(Video).where(Video.tenant_id == tenant_id)
    if status is not None:
        query = query.where(Video.status == status)
    query = query.order_by(Video.created_at.desc(), Video.id.desc()).limit(limit).offset(offset)
    return list(session.scalars(query))


def top_level_tree(session: Session, video: Video, tree_config: TreeConfig) -> dict[str, Any]:
    """The video's tree as clients see it: width and each top-level node with its caption."""
    if not video.num_frames or not video.fps:
        return {"width": video.tree_width, "nodes": []}
    geometry = VideoGeometry(video.num_frames, video.fps, tree_config)
    captions: dict[str, str] = {}
    if video.captioner_version:
        rows = session.execute(
            select(CaptionNode.node_key, CaptionNode.caption).where(
                CaptionNode.content_sha256 == video.sha256,
                CaptionNode.config_version == video.captioner_version,
                CaptionNode.level == 1,
            )
        )
        captions = {key: caption for key, caption in rows}
    nodes = []
    for node in geometry.nodes(1):
        start, end = geometry.seconds(node)
        key = node_key(node)
        nodes.append({"key": key, "start_s": start, "end_s": end, "caption": captions.get(key)})
    return {"width": geometry.width, "nodes": nodes}


def delete_video(
    session: Session, tenant_id: uuid.UUID, video_id: uuid.UUID, settings: Settings,
    after_commit: Callable[[Callable[[], None]], None],
) -> None:
    """Delete a video with its jobs, subtitles and (when no other video shares the bytes)
    captions; its files go once the deletion is committed."""
    video = get_video(session, tenant_id, video_id)
    shared = session.scalar(
        select(func.count()).select_from(Video).where(
            Video.sha256 == video.sha256, Video.id != video.id
        )
    )
    session.execute(delete(Job).where(Job.video_id == video.id))
    session.execute(delete(Subtitle).where(Subtitle.video_id == video.id))
    if not shared:
        session.execute(delete(CaptionNode).where(CaptionNode.content_sha256 == video.sha256))
    session.delete(video)
    session.flush()
    folder = settings.videos_dir / str(video.id)
    after_commit(lambda: shutil.rmtree(folder, ignore_errors=True))
