"""The CPU captioner: what is said, what is written on screen, and what the picture does.

A caption is assembled from the node's speech transcript / subtitle lines (quoted, in
order, as the caption prompt asks of a vision model), RapidOCR text from a few of the
node's frames, and cheap visual measurements. Every fact is a timed statement, so the
retrieval navigator can tell which child node a fact belongs to.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

import numpy as np

from app.core.ports import ModelUsage, SubtitleLine
from app.errors import InvalidInput
from app.models.base import NodeFrames, VisionOutput
from app.models.cpu.ocr import TextBox, TextReader, get_reader
from app.models.cpu.text import quote, said
from app.models.cpu.visual import describe_frames

CAPTION_FORMAT_VERSION = 2
MODEL_NAME = "vidnav-cpu-captioner"
# Frames read by OCR per level (high, medium, low): enough to catch titles and slides that
# stay up for a few seconds, few enough that a 10-minute video ingests in minutes.
DEFAULT_OCR_FRAMES = (4, 3, 3)
# Every caption opens with its clip's span (and says when nothing is said in it).
CLIP_INTRO = r"This clip runs from [\d.]+s to [\d.]+s\.(?: Nothing is said in it\.)?"
_LEADING_INTRO = re.compile(rf"^{CLIP_INTRO}\s*")


def without_clip_intro(caption: str) -> str:
    """A CPU caption without its opening span sentence (for a reader who sees the span)."""
    return _LEADING_INTRO.sub("", caption)


def package_version(name: str) -> str:
    """An installed package's version (``missing`` when it is not installed)."""
    try:
        return version(name)
    except PackageNotFoundError:
        return "missing"


def pick(count: int, available: int) -> list[int]:
    """``count`` evenly spread positions out of ``available`` (all of them if fewer)."""
    if available <= 0 or count <= 0:
        return []
    if count >= available:
        return list(range(available))
    return sorted({int(i) for i in np.linspace(0, available - 1, count + 2)[1:-1].round()})


def speech_statements(lines: Sequence[SubtitleLine]) -> list[str]:
    """One statement per transcript or subtitle line, repeated lines kept once."""
    out: list[str] = []
    previous = ""
    for line in lines:
        text = " ".join(line.text.split())
        if not text or text == previous:
            continue
        previous = text
        out.append(said(line.start, text))
    return out


def screen_text_statements(reads: Sequence[tuple[float, tuple[TextBox, ...]]]) -> list[str]:
    """Timed on-screen text, a run of frames showing the same text written once."""
    out: list[str] = []
    runs: list[tuple[float, float, str]] = []
    for at, boxes in reads:
        text = " / ".join(box.text for box in boxes)
        if not text:
            continue
        if runs and runs[-1][2] == text:
            runs[-1] = (runs[-1][0], at, text)
        else:
            runs.append((at, at, text))
    for start, end, text in runs:
        where = f"At {start:.1f}s" if start == end else f"From {start:.1f}s to {end:.1f}s"
        out.append(f"{where} the screen shows the text {quote(text)}.")
    return out


def frame_id(frames: NodeFrames, position: int) -> tuple[str, int] | None:
    """(video, frame index) of one of the node's frames, when the video is known."""
    if frames.video_path is None or len(frames.frame_indices) != len(frames.images):
        return None
    return str(frames.video_path), frames.frame_indices[position]


def check_frames(frames: NodeFrames) -> None:
    """Raise ``InvalidInput`` unless ``frames`` holds one RGB image per frame time."""
    if not frames.images or len(frames.images) != len(frames.frame_times):
        raise InvalidInput(
            f"node {frames.node!r}: need one image per frame time and at least one, got "
            f"{len(frames.images)} images for {len(frames.frame_times)} times",
            code="invalid_frames",
        )
    for image in frames.images:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or image.size == 0:
            raise InvalidInput(
                f"node {frames.node!r}: frames must be RGB uint8 HxWx3 arrays, got "
                f"{image.dtype} {image.shape}", code="invalid_frames",
            )
    if frames.level not in (1, 2, 3):
        raise InvalidInput(f"node {frames.node!r}: level must be 1, 2 or 3, got "
                           f"{frames.level!r}", code="invalid_frames")


class CPUCaptioner:
    """Implements ``app.models.base.Captioner`` with packaged CPU models only."""

    def __init__(
        self, *, reader: TextReader | None = None,
        ocr_frames: tuple[int, int, int] = DEFAULT_OCR_FRAMES,
        frame_counts: tuple[int, int, int] = (64, 32, 16),
    ) -> None:
        self._reader = reader
        self.ocr_frames = ocr_frames
        self.frame_counts = frame_counts  # frames per level it is given: they decide the facts

    @property
    def reader(self) -> TextReader:
        """The OCR reader, loaded on first use."""
        if self._reader is None:
            self._reader = get_reader()
        return self._reader

    @property
    def config_version(self) -> str:
        """Digest of the caption format, OCR model and sampling; not of the frames."""
        parts = {
            "model": MODEL_NAME, "format": CAPTION_FORMAT_VERSION,
            "ocr": package_version("rapidocr-onnxruntime"), "ocr_frames": self.ocr_frames,
            "frames": self.frame_counts,
        }
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]

    async def caption(self, frames: NodeFrames) -> VisionOutput:
        check_frames(frames)
        return await asyncio.to_thread(self.caption_sync, frames)

    def caption_sync(self, frames: NodeFrames) -> VisionOutput:
        """The caption of one node, computed on the calling thread."""
        check_frames(frames)
        started = time.perf_counter()
        start, end = frames.span
        level = frames.level
        reads = [
            (frames.frame_times[i], self.reader.read(frames.images[i], frame=frame_id(frames, i)))
            for i in pick(self.ocr_frames[level - 1], len(frames.images))
        ]
        speech = speech_statements(frames.subtitles)
        screen = screen_text_statements(reads)
        visual = [s.describe() for s in describe_frames(frames.images, frames.frame_times)]
        intro = f"This clip runs from {start:.1f}s to {end:.1f}s."
        if not speech:
            intro += " Nothing is said in it."
        text = " ".join([intro, *speech, *screen, *visual])
        return VisionOutput(
            text=text, raw_reply=f"<caption>{text}</caption>",
            usage=ModelUsage(seconds=time.perf_counter() - started, model=MODEL_NAME),
        )
