"""What the navigation loop talks to for one video: ``CaptionService`` (its
``CaptionSource``) and ``LeafVideoQA`` (its ``VideoQA``)."""

from __future__ import annotations

import asyncio

from app.core.ports import CaptionResult, NodeId, VideoQAResult
from app.core.tree import LOW
from app.models.base import NodeFrames
from app.services.captions.context import VideoContext, read_node_frames
from app.services.captions.obtain import obtain_caption
from app.services.runtime import Runtime


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
