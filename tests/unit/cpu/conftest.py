"""Frames with real rendered text, for the CPU models (which load from package files)."""

from __future__ import annotations

import cv2
import numpy as np

from app.core.ports import SubtitleLine
from app.models.base import NodeFrames


def text_frame(text: str, size: tuple[int, int] = (288, 512)) -> np.ndarray:
    """A grey RGB frame with ``text`` in large black letters."""
    image = np.full((*size, 3), 235, dtype=np.uint8)
    cv2.putText(image, text, (20, size[0] // 2), cv2.FONT_HERSHEY_SIMPLEX, 1.4, (0, 0, 0), 3,
                cv2.LINE_AA)
    return image


def node_frames(
    images: list[np.ndarray], *, node: tuple[int, ...] = (1, 1, 1), start: float = 10.0,
    step: float = 0.5, subtitles: tuple[SubtitleLine, ...] = (),
) -> NodeFrames:
    times = tuple(round(start + i * step, 1) for i in range(len(images)))
    return NodeFrames(
        node=node, level=len(node), frame_indices=tuple(range(len(images))), frame_times=times,
        images=tuple(images), span=(start, start + step * len(images)), subtitles=subtitles,
    )
