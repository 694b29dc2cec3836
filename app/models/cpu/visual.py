"""Cheap visual facts from sampled frames: shot changes, brightness, dominant colours, motion.

These are measurements, not recognition: they tell the navigator where the picture
changes and what it looks like broadly, which is what a CPU can say honestly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

THUMB = (48, 27)  # (width, height): enough for colour shares and frame differences
CUT_DISTANCE = 0.5  # half the colour histogram mass moved: a new shot
MAX_SEGMENTS = 6

# Hue ranges in degrees for saturated pixels, checked in order.
_HUES = (
    (15.0, "red"), (40.0, "orange"), (70.0, "yellow"), (165.0, "green"), (195.0, "cyan"),
    (260.0, "blue"), (290.0, "purple"), (345.0, "pink"), (360.0, "red"),
)


@dataclass(frozen=True, slots=True)
class Segment:
    """A run of sampled frames without a shot change, described in words."""

    start: float
    end: float
    brightness: str
    colours: tuple[str, ...]
    motion: str

    def describe(self) -> str:
        where = f"At {self.start:.1f}s" if self.start == self.end else (
            f"From {self.start:.1f}s to {self.end:.1f}s")
        colours = " and ".join(self.colours) if self.colours else "mixed colours"
        motion = "" if self.motion == "" else f", {self.motion}"
        return f"{where} the picture is {self.brightness}, mostly {colours}{motion}."


def _thumb(image: np.ndarray) -> np.ndarray:
    """A small float RGB copy in [0, 1] by strided sampling (no resampling library needed)."""
    height, width = image.shape[:2]
    ys = np.linspace(0, height - 1, THUMB[1]).astype(int)
    xs = np.linspace(0, width - 1, THUMB[0]).astype(int)
    return np.asarray(image[np.ix_(ys, xs)], dtype=np.float32) / np.float32(255.0)


def _colour_names(thumb: np.ndarray) -> np.ndarray:
    """A colour name per pixel, from hue, saturation and value."""
    r, g, b = thumb[..., 0], thumb[..., 1], thumb[..., 2]
    high = thumb.max(axis=-1)
    low = thumb.min(axis=-1)
    chroma = high - low
    saturation = np.where(high > 0, chroma / np.maximum(high, 1e-6), 0.0)
    safe = np.maximum(chroma, 1e-6)
    hue = np.where(
        high == r, ((g - b) / safe) % 6.0,
        np.where(high == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0),
    ) * 60.0
    names = np.empty(hue.shape, dtype=object)
    names[:] = "grey"
    for limit, name in reversed(_HUES):
        names[(hue < limit) & (saturation >= 0.25)] = name
    brown = (saturation >= 0.25) & (hue < 40.0) & (high < 0.55)
    names[brown] = "brown"
    names[(saturation < 0.25) & (high >= 0.8)] = "white"
    names[high < 0.15] = "black"
    return names


def dominant_colours(image: np.ndarray, top: int = 2, min_share: float = 0.15) -> tuple[str, ...]:
    """The most common colour names of a frame, each covering at least ``min_share``."""
    names, counts = np.unique(_colour_names(_thumb(image)), return_counts=True)
    order = np.argsort(-counts, kind="stable")
    total = counts.sum()
    return tuple(str(names[i]) for i in order[:top] if counts[i] / total >= min_share)


def brightness(image: np.ndarray) -> str:
    """Mean luma in words."""
    luma = float((_thumb(image) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).mean())
    if luma < 0.12:
        return "dark"
    if luma < 0.35:
        return "dim"
    if luma < 0.7:
        return "well lit"
    return "bright"


def _histogram(thumb: np.ndarray) -> np.ndarray:
    bins = np.minimum((thumb * 4).astype(int), 3)
    codes = bins[..., 0] * 16 + bins[..., 1] * 4 + bins[..., 2]
    hist = np.bincount(codes.ravel(), minlength=64).astype(np.float32)
    return np.asarray(hist / hist.sum(), dtype=np.float32)


def shot_changes(images: Sequence[np.ndarray]) -> list[int]:
    """Positions ``i`` where frame ``i`` starts a new shot (colour histogram jump)."""
    hists = [_histogram(_thumb(image)) for image in images]
    return [i for i in range(1, len(hists))
            if 0.5 * float(np.abs(hists[i] - hists[i - 1]).sum()) >= CUT_DISTANCE]


def _motion(images: Sequence[np.ndarray]) -> str:
    if len(images) < 2:
        return ""
    greys = [_thumb(image).mean(axis=-1) for image in images]
    change = float(np.mean([np.abs(a - b).mean() for a, b in zip(greys, greys[1:], strict=False)]))
    if change < 0.02:
        return "with almost no motion"
    if change < 0.08:
        return "with some motion"
    return "with strong motion"


def describe_frames(images: Sequence[np.ndarray], times: Sequence[float]) -> list[Segment]:
    """The frames split at shot changes, each run described; at most ``MAX_SEGMENTS`` runs
    (the shortest neighbouring runs are merged first)."""
    if not images:
        return []
    bounds = [0, *shot_changes(images), len(images)]
    runs = [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]
    while len(runs) > MAX_SEGMENTS:
        i = min(range(len(runs) - 1),
                key=lambda k: (runs[k][1] - runs[k][0]) + (runs[k + 1][1] - runs[k + 1][0]))
        runs[i:i + 2] = [(runs[i][0], runs[i + 1][1])]
    segments = []
    for first, stop in runs:
        middle = images[(first + stop - 1) // 2]
        segments.append(Segment(
            start=float(times[first]), end=float(times[stop - 1]),
            brightness=brightness(middle), colours=dominant_colours(middle),
            motion=_motion(images[first:stop]),
        ))
    return segments
