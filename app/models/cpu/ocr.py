"""On-screen text with RapidOCR (PP-OCRv4 ONNX models shipped in ``rapidocr-onnxruntime``).

Results are cached per image content: the caption levels and video_qa sample the same
frame indices (linspace over nested ranges), so a frame read once is not read again.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.errors import ModelError

OCR_MAX_SIDE = 640  # detection input; larger frames are scaled down before reading
MIN_CONFIDENCE = 0.6
_CACHE_SIZE = 8192


@dataclass(frozen=True, slots=True)
class TextBox:
    """One line of text read from a frame; ``y`` is the box's top edge as a share of height."""

    text: str
    confidence: float
    y: float


class TextReader:
    """Reads the text in RGB frames; one engine per process, calls serialised."""

    def __init__(self, engine: Any, *, version: str, cache_size: int = _CACHE_SIZE) -> None:
        self._engine = engine
        self.version = version
        self._lock = threading.Lock()
        self._cache: OrderedDict[bytes, tuple[TextBox, ...]] = OrderedDict()
        self._cache_size = cache_size

    def read(self, image: np.ndarray, *, frame: tuple[str, int] | None = None
             ) -> tuple[TextBox, ...]:
        """Text lines of one RGB uint8 frame, top to bottom, low-confidence reads dropped.

        ``frame`` (video path, frame index) names the frame whatever its size, so video_qa
        reuses what the leaf's caption read at 512 px; without it the pixels are the key.
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
            raise ValueError(f"expected an HxWx3 RGB image, got shape {image.shape}")
        if frame is not None:
            key = f"{frame[0]}#{frame[1]}".encode()
        else:
            key = hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=16).digest()
            key += repr(image.shape).encode()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
            boxes = self._read(image)
            self._cache[key] = boxes
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return boxes

    def _read(self, image: np.ndarray) -> tuple[TextBox, ...]:
        height = image.shape[0]
        bgr = np.ascontiguousarray(image[:, :, ::-1])
        result, _elapsed = self._engine(bgr, use_cls=False)
        boxes: list[TextBox] = []
        for points, text, score in result or ():
            text = " ".join(str(text).split())
            if not text or float(score) < MIN_CONFIDENCE:
                continue
            top = min(float(p[1]) for p in points)
            boxes.append(TextBox(text=text, confidence=float(score), y=top / max(height, 1)))
        return tuple(boxes)


def shrink(image: np.ndarray, max_side: int = OCR_MAX_SIDE) -> np.ndarray:
    """``image`` scaled down (never up) so its longest side is at most ``max_side``."""
    height, width = image.shape[:2]
    side = max(height, width)
    if side <= max_side:
        return image
    import cv2

    scale = max_side / side
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA))


_reader: TextReader | None = None
_reader_lock = threading.Lock()


def get_reader() -> TextReader:
    """The process-wide OCR reader, built on first use from the package's model files."""
    global _reader
    if _reader is None:
        with _reader_lock:
            if _reader is None:
                _reader = _load_reader()
    return _reader


def _load_reader() -> TextReader:
    try:
        from importlib.metadata import version

        from rapidocr_onnxruntime import RapidOCR
    except ImportError as exc:
        raise ModelError("the CPU profile needs rapidocr-onnxruntime; install vidnav[cpu]",
                         code="cpu_models_missing") from exc
    engine = RapidOCR(
        det_limit_side_len=OCR_MAX_SIDE, det_limit_type="max", use_cls=False,
        # Two cores are shared by decoding, OCR and embeddings: one thread each.
        intra_op_num_threads=1, inter_op_num_threads=1,
    )
    return TextReader(engine, version=f"rapidocr-onnxruntime@{version('rapidocr-onnxruntime')}"
                                       f":max{OCR_MAX_SIDE}:c{MIN_CONFIDENCE}")
