"""The vision-model roles behind the caption service and video_qa: typed, transport-free.

Adapters: ``app.models.openai_vision`` (any OpenAI-compatible server, e.g. vLLM serving
Qwen3-VL) and ``app.models.cpu`` (the CPU profile built from small packaged models).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from app.core.ports import ModelUsage, NodeId, SubtitleLine


@dataclass(frozen=True, slots=True)
class NodeFrames:
    """The decoded material of one node, ready for a vision model."""

    node: NodeId
    level: int  # 1 high, 2 medium, 3 low
    frame_indices: tuple[int, ...]
    frame_times: tuple[float, ...]  # protocol time labels, one per frame
    images: tuple[np.ndarray, ...]  # RGB uint8 HxWx3, already scaled to the level's max side
    span: tuple[float, float]  # seconds covered by the node's frame range
    subtitles: tuple[SubtitleLine, ...] = ()  # lines overlapping the span, sorted
    video_path: Path | None = None  # for adapters that also read audio
    # The images as the adapter that prepared them sends them (JPEG data URIs), one per
    # image, when a batch encoded them ahead; empty otherwise.
    image_urls: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class VisionOutput:
    text: str  # the caption / the answer, tags stripped
    raw_reply: str
    usage: ModelUsage = field(default_factory=ModelUsage)


class Captioner(Protocol):
    """Writes one node's caption."""

    @property
    def config_version(self) -> str:
        """A digest of everything a caption depends on besides content and node
        (model, prompt version, frame counts and sizes); a change makes new cache keys."""
        ...

    async def caption(self, frames: NodeFrames) -> VisionOutput: ...


@runtime_checkable
class PreparesFrames(Protocol):
    """A captioner whose per-frame CPU work (e.g. JPEG encoding) can be done ahead of
    ``caption``, for many nodes at once and away from the event loop."""

    def prepare_frames(self, batch: Sequence[NodeFrames]) -> list[NodeFrames]:
        """``batch`` ready for ``caption``, same order (blocking: run it in a thread)."""
        ...


class FrameQA(Protocol):
    """The video_qa model: answers a query about one leaf's frames."""

    async def answer(self, frames: NodeFrames, query: str) -> VisionOutput: ...
