"""Captions of tree nodes: served from the cache, else the database, else generated once.

``CaptionService`` is the navigation loop's ``CaptionSource`` for one video. A miss is
generated under single-flight: one asyncio future per key inside the process, and a Redis
``SET NX PX`` lock across processes, so two navigations asking for the same missing
caption at once make one captioner call and both get its result.

``caption_nodes`` captions many nodes of a video at once (what the caption mode schedules
ahead): frames are decoded (and encoded as the captioner sends them) in threads, groups of
neighbouring nodes ahead of the captioner, and up to the captioner's concurrency limit of
nodes are captioned at the same time, with more nodes in hand than that so a freed slot
finds the next node ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from app.core.ports import CaptionResult, ModelUsage, NodeId, SubtitleLine, VideoQAResult
from app.core.tree import HIGH, LEVELS, LOW, VideoGeometry, node_key, parse_node_key
from app.db.base import utcnow
from app.db.models import CaptionNode, Subtitle, Video
from app.db.session import session_scope
from app.errors import ModelError, NotFound, Unavailable, VidnavError
from app.media.frames import FrameReader, scaled_size
from app.media.probe import StreamInfo, VideoProbe
from app.models.base import NodeFrames, PreparesFrames
from app.services.cache import CachedCaption, cache_key, caption_version, subtitle_digest
from app.services.queue import RetryLater
from app.services.runtime import Runtime

logger = logging.getLogger(__name__)

# Which subtitle track captions are written with when a video has several.
_TRACK_PREFERENCE = {"upload": 0, "embedded": 1, "transcript": 2}
_POLL_S = 0.05
# Frames decoded by one FrameReader.read_many call: neighbouring nodes decoded together
# share ffmpeg runs and seeks, but every frame of the group is held in memory at once.
DECODE_BUDGET_BYTES = 32 * 2**20
DECODERS = 2
DECODE_MAX_GROUP = 256
# Nodes in hand per captioner slot: while a slot's call is in flight, the other nodes of
# that slot are being locked, written, cached and unlocked, so a freed slot finds the next
# node ready.
NODES_PER_SLOT = 3
PROGRESS_EVERY_S = 0.25


class CaptionerFailed(VidnavError):
    """The captioner could not caption a node (after the model client's own retries)."""

    code = "captioner_failed"
    kind = "unavailable"


def levels_ahead(mode: str) -> tuple[int, ...]:
    """The levels a caption mode captions before any question: all, the high one, or none."""
    return {"eager": LEVELS, "online": (HIGH,), "lazy": ()}.get(mode, (HIGH,))


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


def batch_read_workers() -> int:
    """Decoding passes each ``FrameReader.read_many`` of a caption batch runs at once:
    ``DECODERS`` reads overlap, so this many each keeps the decoding threads at about the
    cores (more only trade the GIL with the event loop that keeps the captioner busy)."""
    return max(1, (os.cpu_count() or 2) // DECODERS)


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


# --- rows ----------------------------------------------------------------------------------


def _read_rows(runtime: Runtime, ctx: VideoContext, keys: Sequence[str]
               ) -> dict[str, CachedCaption]:
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


def _row_values(ctx: VideoContext, node: NodeId, frames: NodeFrames, caption: str,
                raw_reply: str, usage: ModelUsage) -> dict[str, Any]:
    start, stop = ctx.geometry.frame_range(node)
    return {
        "id": uuid.uuid4(), "content_sha256": ctx.sha256, "config_version": ctx.version,
        "node_key": node_key(node), "level": len(node), "first_frame": start,
        "last_frame": max(start, stop - 1), "frame_times": list(frames.frame_times),
        "caption": caption, "raw_reply": raw_reply, "model": usage.model,
        "model_seconds": usage.seconds, "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens, "created_at": utcnow(),
    }


def _insert_rows(runtime: Runtime, ctx: VideoContext, rows: Sequence[dict[str, Any]]
                 ) -> dict[str, CachedCaption]:
    """Insert caption rows, skipping keys that already have one (a retried or duplicated
    task); return each key's stored caption, ours or the one that was there first."""
    insert = pg_insert if runtime.engine.dialect.name == "postgresql" else sqlite_insert
    statement = insert(CaptionNode).on_conflict_do_nothing(
        index_elements=["content_sha256", "config_version", "node_key"]
    ).returning(CaptionNode.node_key)
    with runtime.engine.begin() as conn:
        inserted = set(conn.execute(statement, list(rows)).scalars())
    stored = {r["node_key"]: CachedCaption(r["caption"], tuple(r["frame_times"]))
              for r in rows if r["node_key"] in inserted}
    lost = [r["node_key"] for r in rows if r["node_key"] not in inserted]
    stored.update(_read_rows(runtime, ctx, lost))
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
                    _insert_rows, self.runtime, self.ctx, [row for row, _ in batch])
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


# --- one caption, single-flight ------------------------------------------------------------


async def _from_database(
    runtime: Runtime, ctx: VideoContext, node: NodeId, key: str
) -> CaptionResult | None:
    """The node's stored caption, put back in the cache (a Redis flush may have emptied it)."""
    rows = await asyncio.to_thread(_read_rows, runtime, ctx, [node_key(node)])
    if not rows:
        return None
    await runtime.caption_cache.put(key, rows[node_key(node)])
    return _served(node, rows[node_key(node)])


async def obtain_caption(
    runtime: Runtime, ctx: VideoContext, node: NodeId,
    load_frames: Callable[[], Awaitable[NodeFrames]], *, known_missing: bool = False,
    writer: RowWriter | None = None,
) -> CaptionResult:
    """The caption of ``node``: cache, then database, then generated exactly once.

    ``known_missing``: the caller has just seen no row for the node (a batch reads all its
    rows at once), so the database is not asked again before taking the lock."""
    cache = runtime.caption_cache
    key = ctx.key(node)
    if not known_missing:
        hit = await cache.get(key)
        if hit is not None:
            return _served(node, hit)
        served = await _from_database(runtime, ctx, node, key)
        if served is not None:
            return served

    pending = cache.inflight.get(key)
    if pending is not None:
        result: CaptionResult = await asyncio.shield(pending)
        return dataclasses.replace(result, cached=True, usage=None)
    future: asyncio.Future[CaptionResult] = asyncio.get_running_loop().create_future()
    cache.inflight[key] = future
    try:
        result = await _generate_once(runtime, ctx, node, key, load_frames, writer)
    except BaseException as exc:
        future.set_exception(exc)
        future.exception()  # retrieved here; the waiters still receive it
        raise
    else:
        future.set_result(result)
        return result
    finally:
        cache.inflight.pop(key, None)


def _served(node: NodeId, value: CachedCaption) -> CaptionResult:
    return CaptionResult(node=node, caption=value.caption, frame_times=value.frame_times,
                         cached=True)


async def _generate_once(
    runtime: Runtime, ctx: VideoContext, node: NodeId, key: str,
    load_frames: Callable[[], Awaitable[NodeFrames]], writer: RowWriter | None,
) -> CaptionResult:
    """Generate under the cross-process lock, or wait for the process that holds it."""
    cache = runtime.caption_cache
    settings = runtime.settings
    deadline = time.monotonic() + settings.caption_wait_s
    while True:
        token, hit = await cache.lock_or_get(key, settings.caption_lock_ttl_s)
        if token is not None:
            stored: CachedCaption | None = hit
            try:
                if hit is not None:
                    # Made by another process between our miss and the lock: whoever
                    # makes a caption caches it, so the cache alone answers this.
                    return _served(node, hit)
                result = await _generate_locked(runtime, ctx, node, key, token, load_frames,
                                                writer)
                stored = CachedCaption(result.caption, result.frame_times)
                return result
            finally:
                await cache.put_and_unlock(key, stored, token)
        if hit is not None:
            return _served(node, hit)
        while await cache.is_locked(key):
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"caption of node {node_key(node)} was not produced within "
                    f"{settings.caption_wait_s:.0f} s by the worker generating it",
                    code="caption_wait_timeout")
            await asyncio.sleep(_POLL_S)
            hit = await cache.get(key)
            if hit is not None:
                return _served(node, hit)
        served = await _from_database(runtime, ctx, node, key)
        if served is not None:
            return served
        # The holder gave up (failed or died) without a caption: try ourselves.


async def _generate_locked(
    runtime: Runtime, ctx: VideoContext, node: NodeId, key: str, token: str,
    load_frames: Callable[[], Awaitable[NodeFrames]], writer: RowWriter | None,
) -> CaptionResult:
    """Caption the node while holding its lock (kept alive while the model works) and
    store the row; the caller caches the result and releases the lock."""
    cache = runtime.caption_cache
    ttl = runtime.settings.caption_lock_ttl_s

    async def keep_lock() -> None:
        while True:
            await asyncio.sleep(ttl / 3)
            await cache.extend_lock(key, token, ttl)

    keeper = asyncio.create_task(keep_lock())
    try:
        frames = await load_frames()
        try:
            output = await runtime.captioner.caption(frames)
        except ModelError as exc:
            raise CaptionerFailed(
                f"captioning node {node_key(node)} failed: {exc.message}",
                code=exc.code, details=exc.details) from exc
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
    row = _row_values(ctx, node, frames, output.text, output.raw_reply, output.usage)
    if writer is not None:
        stored = await writer.write(row)
    else:
        stored = (await asyncio.to_thread(_insert_rows, runtime, ctx, [row]))[row["node_key"]]
    return CaptionResult(node=node, caption=stored.caption, frame_times=stored.frame_times,
                         cached=False, usage=output.usage, raw_reply=output.raw_reply)


def decode_group(ctx: VideoContext, group: Sequence[NodeId],
                 prepare: Callable[[Sequence[NodeFrames]], list[NodeFrames]] | None = None,
                 ) -> list[NodeFrames]:
    """Decode the frames of neighbouring nodes together and, when the captioner can, do
    its per-frame work (JPEG encoding) here too, so a captioning slot that frees up finds
    its next node ready to send (blocking: run in a thread)."""
    requests = [(ctx.geometry.sample_frames(n), ctx.geometry.max_side(len(n))) for n in group]
    images = ctx.reader.read_many(requests)
    batch = [ctx.node_frames(node, indices, imgs, len(node))
             for node, (indices, _), imgs in zip(group, requests, images, strict=True)]
    return prepare(batch) if prepare is not None else batch


def read_node_frames(ctx: VideoContext, node: NodeId) -> NodeFrames:
    """Decode the frames a node's caption is written from (blocking: run in a thread)."""
    level = len(node)
    indices = ctx.geometry.sample_frames(node)
    images = ctx.reader.read(indices, ctx.geometry.max_side(level))
    return ctx.node_frames(node, indices, images, level)


class CaptionService:
    """``CaptionSource`` of one video for the navigation loop (cache -> rows -> generate)."""

    def __init__(self, runtime: Runtime, ctx: VideoContext) -> None:
        self.runtime = runtime
        self.ctx = ctx

    async def get_caption(self, node: NodeId) -> CaptionResult:
        node = self.ctx.geometry.validate(node)

        async def load() -> NodeFrames:
            return await asyncio.to_thread(read_node_frames, self.ctx, node)

        return await obtain_caption(self.runtime, self.ctx, node, load)


class LeafVideoQA:
    """``VideoQA`` of one video: reads a leaf's frames at the video_qa size and asks frame_qa."""

    def __init__(self, runtime: Runtime, ctx: VideoContext) -> None:
        self.runtime = runtime
        self.ctx = ctx

    async def ask(self, node: NodeId, query: str) -> VideoQAResult:
        geometry = self.ctx.geometry
        indices = geometry.videoqa_frames(node)
        images = await asyncio.to_thread(self.ctx.reader.read, indices,
                                         geometry.videoqa_max_side)
        frames = self.ctx.node_frames(node, indices, images, LOW)
        output = await self.runtime.frame_qa.answer(frames, query)
        return VideoQAResult(node=node, query=query, answer=output.text,
                             raw_reply=output.raw_reply, frame_times=frames.frame_times,
                             usage=output.usage)


# --- many captions: the caption task -------------------------------------------------------


def scheduled_nodes(geometry: VideoGeometry, mode: str) -> list[NodeId]:
    """The nodes a caption mode captions ahead of questions, coarse levels first."""
    return [node for level in levels_ahead(mode) for node in geometry.iter_nodes(level)]


def decode_groups(ctx: VideoContext, nodes: Sequence[NodeId], first: int = 16
                  ) -> Iterator[list[NodeId]]:
    """Split ``nodes`` (in order) into groups whose distinct decoded frames fit the budget.

    The first ``DECODERS`` groups have ``first`` nodes, the next ones twice as many, and so
    on: starting a decoder costs about as much as decoding a few hundred small frames, so
    one slot-load of neighbouring nodes is ready about as soon as a single node would be,
    and each decoder's next group, twice as big, is ready before the captioner has drained
    what came before it."""
    probe = ctx.reader.probe
    group: list[NodeId] = []
    seen: set[tuple[int, int]] = set()
    used = 0
    made = 0
    limit = max(1, first)
    for node in nodes:
        side = ctx.geometry.max_side(len(node))
        width, height = scaled_size(probe.width, probe.height, side)
        frames = {(i, side) for i in ctx.geometry.sample_frames(node)}
        cost = len(frames - seen) * width * height * 3
        if group and (used + cost > DECODE_BUDGET_BYTES or len(group) >= limit):
            yield group
            made += 1
            group, seen, used = [], set(), 0
            limit = min(max(1, first) * 2 ** (made // DECODERS), DECODE_MAX_GROUP)
            cost = len(frames) * width * height * 3
        group.append(node)
        seen |= frames
        used += cost
    if group:
        yield group


@dataclass
class BatchReport:
    """What one ``caption_batch`` did: captions generated here and served from elsewhere."""

    generated: int = 0
    served: int = 0
    model_seconds: float = 0.0
    wall_seconds: float = 0.0
    frame_wait_seconds: float = 0.0  # summed over the captioning slots: decoding fell behind


async def caption_batch(runtime: Runtime, ctx: VideoContext, nodes: Sequence[NodeId],
                        *, on_progress: Callable[[], None] | None = None) -> BatchReport:
    """Caption ``nodes``: decoding threads run ahead of up to ``captioner_concurrency``
    model calls; nodes already captioned are skipped without decoding."""
    settings = runtime.settings
    report = BatchReport()
    began = time.perf_counter()
    last_progress = [0.0]
    keys = [node_key(n) for n in nodes]
    stored = await asyncio.to_thread(_read_rows, runtime, ctx, keys)
    # In time order, a node right after its last child: a group then covers one stretch of
    # the video whatever the levels, so the video is decoded about once, not once per level,
    # and the first group is a run of neighbouring leaves, one short ffmpeg pass, rather
    # than a high node whose frames are spread over an eighth of the video.
    todo = sorted((n for n, k in zip(nodes, keys, strict=True) if k not in stored),
                  key=lambda n: (ctx.geometry.frame_range(n)[1], -len(n)))
    report.served = len(nodes) - len(todo)
    if not todo:
        report.wall_seconds = time.perf_counter() - began
        return report

    # More nodes in hand than model slots: while some are locked, written or cached, others
    # fill the slots. The model client still caps calls in flight at the limit.
    slots = settings.captioner_concurrency
    workers = max(1, min(slots * NODES_PER_SLOT, len(todo)))
    writer = RowWriter(runtime, ctx)
    ready: asyncio.Queue[NodeFrames | None] = asyncio.Queue(
        maxsize=max(settings.decode_ahead, workers))
    # Decoded groups wait while the next ones are decoded, so decoding never pauses for the
    # captioner to drain a group; memory stays within a few DECODE_BUDGET_BYTES. Two
    # decoders keep both an ffmpeg run and the Python side of the next one busy.
    decoded: asyncio.Queue[list[NodeFrames] | None] = asyncio.Queue(maxsize=DECODERS)
    groups = iter(decode_groups(ctx, todo, first=slots))
    captioner = runtime.captioner
    prepare = captioner.prepare_frames if isinstance(captioner, PreparesFrames) else None

    async def decode() -> None:
        try:
            for group in groups:
                await decoded.put(await asyncio.to_thread(decode_group, ctx, group, prepare))
        finally:
            await decoded.put(None)

    async def feed() -> None:
        try:
            finished = 0
            while finished < DECODERS:
                group = await decoded.get()
                if group is None:
                    finished += 1
                    continue
                for frames in group:
                    await ready.put(frames)
        finally:
            for _ in range(workers):
                await ready.put(None)

    async def caption_worker() -> None:
        while True:
            waited = time.perf_counter()
            frames = await ready.get()
            if frames is None:
                return
            report.frame_wait_seconds += time.perf_counter() - waited

            async def given(frames: NodeFrames = frames) -> NodeFrames:
                return frames

            result = await obtain_caption(runtime, ctx, frames.node, given, known_missing=True,
                                          writer=writer)
            if result.cached:
                report.served += 1
            else:
                report.generated += 1
                report.model_seconds += result.usage.seconds if result.usage else 0.0
            now = time.monotonic()
            if on_progress is not None and now - last_progress[0] >= PROGRESS_EVERY_S:
                # A recount of the rows: a few times a second is plenty, and cheap.
                last_progress[0] = now
                await asyncio.to_thread(on_progress)

    tasks = [asyncio.create_task(decode()) for _ in range(DECODERS)]
    tasks.append(asyncio.create_task(feed()))
    tasks += [asyncio.create_task(caption_worker()) for _ in range(workers)]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    report.wall_seconds = time.perf_counter() - began
    return report


def caption_nodes(runtime: Runtime, video_id: uuid.UUID, node_keys: Sequence[str] | None = None,
                  *, final_attempt: bool = True) -> None:
    """The caption task: caption ``node_keys`` (None: what the video's mode captions ahead)
    and keep the video's progress; a captioner that stays down fails the video."""
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

    try:
        runtime.run(caption_batch(runtime, ctx, nodes, on_progress=progress if ahead else None))
    except CaptionerFailed as exc:
        if not final_attempt:
            raise RetryLater(exc.message, failure=True) from exc
        _give_up(runtime, video_id, ahead, exc)
        return
    except VidnavError as exc:
        _give_up(runtime, video_id, ahead, exc)
        return
    if ahead:
        with session_scope(runtime.session_factory) as session:
            update_progress(session, video_id)


def _give_up(runtime: Runtime, video_id: uuid.UUID, ahead: bool, exc: VidnavError) -> None:
    """Record why captioning stopped: on the video when it was its scheduled captions (a
    question's own caption failures are reported on the job instead)."""
    logger.error("captioning video %s failed: %s", video_id, exc.message)
    if ahead:
        fail_video(runtime, video_id, exc.code, exc.message)


def fail_video(runtime: Runtime, video_id: uuid.UUID, code: str, message: str) -> None:
    with session_scope(runtime.session_factory) as session:
        session.execute(
            update(Video).where(Video.id == video_id, Video.status != "ready")
            .values(status="failed", error_code=code, error=message)
        )
