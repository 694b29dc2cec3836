"""Many captions of one video at once (what a caption mode schedules ahead): the batch
scheduler.

Frames are decoded (and encoded as the captioner sends them) in threads, groups of
neighbouring nodes ahead of the captioner, and up to the captioner's concurrency limit of
nodes are captioned at the same time, with more nodes in hand than that so a freed slot
finds the next node ready.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from app.core.ports import NodeId
from app.core.tree import node_key
from app.media.frames import scaled_size
from app.models.base import NodeFrames, PreparesFrames
from app.services.captions.context import VideoContext
from app.services.captions.obtain import obtain_caption
from app.services.captions.storage import RowWriter, read_rows
from app.services.runtime import Runtime

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

Prepare = Callable[[Sequence[NodeFrames]], list[NodeFrames]]


def batch_read_workers() -> int:
    """Decoding passes each ``FrameReader.read_many`` of a caption batch runs at once:
    ``DECODERS`` reads overlap, so this many each keeps the decoding threads at about the
    cores (more only trade the GIL with the event loop that keeps the captioner busy)."""
    return max(1, (os.cpu_count() or 2) // DECODERS)


def decode_group(ctx: VideoContext, group: Sequence[NodeId], prepare: Prepare | None = None
                 ) -> list[NodeFrames]:
    """Decode the frames of neighbouring nodes together and, when the captioner can, do
    its per-frame work (JPEG encoding) here too, so a captioning slot that frees up finds
    its next node ready to send (blocking: run in a thread)."""
    requests = [(ctx.geometry.sample_frames(n), ctx.geometry.max_side(len(n))) for n in group]
    images = ctx.reader.read_many(requests)
    batch = [ctx.node_frames(node, indices, imgs, len(node))
             for node, (indices, _), imgs in zip(group, requests, images, strict=True)]
    return prepare(batch) if prepare is not None else batch


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
    began = time.perf_counter()
    keys = [node_key(n) for n in nodes]
    stored = await asyncio.to_thread(read_rows, runtime, ctx, keys)
    # In time order, a node right after its last child: a group then covers one stretch of
    # the video whatever the levels, so the video is decoded about once, not once per level,
    # and the first group is a run of neighbouring leaves, one short ffmpeg pass, rather
    # than a high node whose frames are spread over an eighth of the video.
    todo = sorted((n for n, k in zip(nodes, keys, strict=True) if k not in stored),
                  key=lambda n: (ctx.geometry.frame_range(n)[1], -len(n)))
    report = BatchReport(served=len(nodes) - len(todo))
    if todo:
        await CaptionBatch(runtime, ctx, todo, report, on_progress).run()
    report.wall_seconds = time.perf_counter() - began
    return report


class CaptionBatch:
    """One run of the pipeline: ``DECODERS`` decoders -> a feeder -> caption slots.

    Decoded groups wait while the next ones are decoded, so decoding never pauses for the
    captioner to drain a group; memory stays within a few ``DECODE_BUDGET_BYTES``. Two
    decoders keep both an ffmpeg run and the Python side of the next one busy. More nodes
    are in hand than model slots: while some are locked, written or cached, others fill
    the slots (the model client still caps calls in flight at the limit).
    """

    def __init__(self, runtime: Runtime, ctx: VideoContext, todo: Sequence[NodeId],
                 report: BatchReport, on_progress: Callable[[], None] | None) -> None:
        settings = runtime.settings
        self.runtime = runtime
        self.ctx = ctx
        self.report = report
        self.on_progress = on_progress
        self.last_progress = 0.0
        slots = settings.captioner_concurrency
        self.workers = max(1, min(slots * NODES_PER_SLOT, len(todo)))
        self.writer = RowWriter(runtime, ctx)
        self.ready: asyncio.Queue[NodeFrames | None] = asyncio.Queue(
            maxsize=max(settings.decode_ahead, self.workers))
        self.decoded: asyncio.Queue[list[NodeFrames] | None] = asyncio.Queue(maxsize=DECODERS)
        self.groups = iter(decode_groups(ctx, todo, first=slots))
        captioner = runtime.captioner
        self.prepare = captioner.prepare_frames if isinstance(captioner, PreparesFrames) else None

    async def run(self) -> None:
        tasks = [asyncio.create_task(self._decode()) for _ in range(DECODERS)]
        tasks.append(asyncio.create_task(self._feed()))
        tasks += [asyncio.create_task(self._caption()) for _ in range(self.workers)]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _decode(self) -> None:
        try:
            for group in self.groups:
                await self.decoded.put(
                    await asyncio.to_thread(decode_group, self.ctx, group, self.prepare))
        finally:
            await self.decoded.put(None)

    async def _feed(self) -> None:
        try:
            finished = 0
            while finished < DECODERS:
                group = await self.decoded.get()
                if group is None:
                    finished += 1
                    continue
                for frames in group:
                    await self.ready.put(frames)
        finally:
            for _ in range(self.workers):
                await self.ready.put(None)

    async def _caption(self) -> None:
        report = self.report
        while True:
            waited = time.perf_counter()
            frames = await self.ready.get()
            if frames is None:
                return
            report.frame_wait_seconds += time.perf_counter() - waited

            async def given(frames: NodeFrames = frames) -> NodeFrames:
                return frames

            result = await obtain_caption(self.runtime, self.ctx, frames.node, given,
                                          known_missing=True, writer=self.writer)
            if result.cached:
                report.served += 1
            else:
                report.generated += 1
                report.model_seconds += result.usage.seconds if result.usage else 0.0
            await self._progress()

    async def _progress(self) -> None:
        now = time.monotonic()
        if self.on_progress is not None and now - self.last_progress >= PROGRESS_EVERY_S:
            # A recount of the rows: a few times a second is plenty, and cheap.
            self.last_progress = now
            await asyncio.to_thread(self.on_progress)
