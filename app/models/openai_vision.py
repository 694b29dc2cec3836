"""The captioner and video_qa roles over an OpenAI-compatible vision model (e.g. Qwen3-VL).

Requests are built by ``app.core.protocol`` so they match the LongVideo-R1 wire format
to the character; this module only encodes the frames and sends them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
from collections.abc import Sequence
from functools import cache
from importlib import resources

import numpy as np

from app.core.paper_captions import paper_caption_messages, paper_caption_text
from app.core.protocol import (
    caption_messages,
    extract_caption,
    extract_video_qa_answer,
    subtitles_at,
    video_qa_messages,
)
from app.core.tree import LEVELS, TreeConfig, max_side
from app.errors import InvalidInput, ModelError
from app.models.base import NodeFrames, VisionOutput
from app.models.images import to_jpeg_data_uri
from app.models.openai_client import OpenAIChatClient
from app.models.policy import ChatClient
from app.settings import Settings


@cache
def paper_prompts_sha256() -> str:
    data = resources.files("app.core").joinpath("prompts_paper.json").read_bytes()
    return hashlib.sha256(data).hexdigest()


@cache
def prompts_sha256() -> str:
    """Digest of the protocol strings; a new prompt version makes new caption cache keys."""
    data = resources.files("app.core").joinpath("prompts.json").read_bytes()
    return hashlib.sha256(data).hexdigest()


def tree_config(settings: Settings) -> TreeConfig:
    """The tree and sampling parameters as configured (``TreeConfig`` mirrors the names)."""
    return TreeConfig(**{name: getattr(settings, name) for name in TreeConfig.__dataclass_fields__})


def _check_frames(frames: NodeFrames) -> None:
    if not frames.images or len(frames.images) != len(frames.frame_times):
        raise InvalidInput(
            f"node {frames.node!r}: need one image per frame time and at least one, got "
            f"{len(frames.images)} images for {len(frames.frame_times)} times",
            code="invalid_frames",
        )


def _check_level(frames: NodeFrames) -> None:
    _check_frames(frames)
    if frames.level not in LEVELS:
        raise InvalidInput(f"node {frames.node!r}: level must be 1, 2 or 3, got "
                           f"{frames.level!r}", code="invalid_frames")


async def _data_uris(images: Sequence[np.ndarray], side: int) -> list[str]:
    """JPEG-encode frames off the event loop: dozens of frames take tens of milliseconds."""
    return await asyncio.to_thread(lambda: [to_jpeg_data_uri(image, side) for image in images])


class OpenAICaptioner:
    """Writes one node's caption from its sampled frames and the subtitles showing at each."""

    def __init__(self, client: ChatClient, config: TreeConfig | None = None, *,
                 model: str | None = None, preset: str = "demo") -> None:
        self.client = client
        self.config = config if config is not None else TreeConfig()
        self.model = model if model is not None else str(getattr(client, "model", ""))
        self.preset = preset
        recipe: dict[str, object] = {
            "model": self.model,
            "prompts_sha256": prompts_sha256(),
            "frames": [self.config.frames_for_level(level) for level in LEVELS],
            "sides": [max_side(level) for level in LEVELS],
            "words": [self.config.caption_words(level) for level in LEVELS],
        }
        if preset != "demo":  # the demo's cache keys stay what they were
            recipe["preset"] = preset
            recipe["paper_prompts_sha256"] = paper_prompts_sha256()
        digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()
        self._config_version = digest[:16]

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAICaptioner:
        """The captioner at ``VIDNAV_CAPTIONER_BASE_URL``."""
        return cls(OpenAIChatClient.for_role(settings, "captioner"), tree_config(settings),
                   preset=settings.caption_preset)

    @property
    def config_version(self) -> str:
        """Short digest of model, prompt version, frame counts, image sides and word limits."""
        return self._config_version

    def prepare_frames(self, batch: Sequence[NodeFrames]) -> list[NodeFrames]:
        """Encode the frames of many nodes ahead of ``caption`` (blocking: run it in a
        thread). Nodes of one batch often show the same frame at the same size (a leaf
        samples its few frames more than once, and its parents sample them too): such a
        frame is encoded once."""
        encoded: dict[tuple[int, int], tuple[np.ndarray, str]] = {}
        prepared = []
        for frames in batch:
            _check_level(frames)
            if len(frames.frame_indices) != len(frames.images):
                raise InvalidInput(
                    f"node {frames.node!r}: need one frame index per image, got "
                    f"{len(frames.frame_indices)} for {len(frames.images)} images",
                    code="invalid_frames")
            side = max_side(frames.level)
            urls: list[str] = []
            for index, image in zip(frames.frame_indices, frames.images, strict=True):
                if not isinstance(image, np.ndarray) or image.ndim < 2:
                    urls.append(to_jpeg_data_uri(image, side))  # says what is wrong
                    continue
                # Same index, same picture and same output size: the same JPEG.
                key = (index, min(side, max(image.shape[:2])))
                done = encoded.get(key)
                if done is None or not (done[0] is image or np.array_equal(done[0], image)):
                    done = image, to_jpeg_data_uri(image, side)
                    encoded[key] = done
                urls.append(done[1])
            prepared.append(dataclasses.replace(frames, image_urls=tuple(urls)))
        return prepared

    async def caption(self, frames: NodeFrames) -> VisionOutput:
        _check_level(frames)
        if len(frames.image_urls) == len(frames.images):
            urls = list(frames.image_urls)
        else:
            urls = await _data_uris(frames.images, max_side(frames.level))
        subtitles = [subtitles_at(frames.subtitles, t) for t in frames.frame_times]
        if self.preset == "paper":
            messages = paper_caption_messages(
                level=frames.level, frame_times=frames.frame_times, image_urls=urls,
                frame_subtitles=subtitles, num_words=self.config.caption_words(frames.level))
        else:
            messages = caption_messages(
                level=frames.level, frame_times=frames.frame_times, image_urls=urls,
                frame_subtitles=subtitles, num_words=self.config.caption_words(frames.level))
        reply, usage = await self.client.chat(messages)
        caption = extract_caption(reply)
        if self.preset == "paper" and caption.strip():
            caption = paper_caption_text(reply)  # stored whole: what the policy trained on
        if not caption.strip():
            # Captions are kept for good (keyed by content): an empty one would be served
            # to every later question; an error lets the job ask again.
            raise ModelError(
                f"the captioner model {self.model!r} answered an empty caption for node "
                f"{frames.node!r}", code="model_bad_response",
                details={"role": "captioner", "model": self.model, "node": list(frames.node)})
        return VisionOutput(text=caption, raw_reply=reply, usage=usage)


class OpenAIFrameQA:
    """Answers the policy's video_qa query from one leaf's frames (1024 px, 16 frames)."""

    def __init__(self, client: ChatClient, config: TreeConfig | None = None) -> None:
        self.client = client
        self.config = config if config is not None else TreeConfig()

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIFrameQA:
        """The video_qa model at ``VIDNAV_VIDEOQA_BASE_URL``."""
        return cls(OpenAIChatClient.for_role(settings, "video_qa"), tree_config(settings))

    async def answer(self, frames: NodeFrames, query: str) -> VisionOutput:
        _check_frames(frames)
        if not isinstance(query, str) or not query.strip():
            raise InvalidInput("a video_qa query must be a non-empty string",
                               code="invalid_query")
        urls = await _data_uris(frames.images, self.config.videoqa_max_side)
        messages = video_qa_messages(query=query, frame_times=frames.frame_times,
                                     image_urls=urls)
        reply, usage = await self.client.chat(messages)
        return VisionOutput(text=extract_video_qa_answer(reply), raw_reply=reply, usage=usage)
