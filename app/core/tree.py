"""The three-level caption tree of one video: width, node ids, frame ranges, sampled frames.

Geometry follows the LongVideo-R1 protocol (``../shared/spec/longvideo-r1-protocol.md`` §1):
``width = clamp(round((duration / segment_len) ** (1/3)), min_width, max_width)``; every
level splits its parent's frames into ``width`` contiguous chunks with numpy ``array_split``
semantics (the first chunks get the extra frame), so children partition their parent.
Frame ranges are half-open ``[start, stop)`` frame indices and may be empty when the video
has fewer frames than a level has nodes; sampling an empty node falls back to the last
frame before it (the nearest frame of the nearest non-empty ancestor).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from app.core.ports import NodeId
from app.errors import InvalidInput

HIGH, MEDIUM, LOW = 1, 2, 3
LEVELS = (HIGH, MEDIUM, LOW)
LEVEL_NAMES = {HIGH: "high", MEDIUM: "medium", LOW: "low"}


class InvalidNode(InvalidInput):
    """A node id that does not exist in this video's tree."""

    code = "invalid_node"


class InvalidGeometry(InvalidInput):
    """Video measurements or tree parameters no tree can be built from."""

    code = "invalid_geometry"


@dataclass(frozen=True, slots=True)
class TreeConfig:
    """Tree and sampling parameters; field names mirror ``Settings`` (paper defaults)."""

    segment_len_s: float = 16.0
    min_width: int = 4
    max_width: int = 8
    high_frames: int = 64
    medium_frames: int = 32
    low_frames: int = 16
    videoqa_frames: int = 16
    videoqa_max_side: int = 1024
    high_caption_words: int = 300
    low_caption_words: int = 200

    def __post_init__(self) -> None:
        segment_len = _positive_real(self.segment_len_s)
        if segment_len is None:
            raise InvalidGeometry(
                f"segment_len_s must be a positive number, got {self.segment_len_s!r}"
            )
        # Plain Python numbers, so a config built from numpy values serialises cleanly.
        object.__setattr__(self, "segment_len_s", segment_len)
        for name in ("min_width", "max_width", "high_frames", "medium_frames", "low_frames",
                     "videoqa_frames", "videoqa_max_side", "high_caption_words",
                     "low_caption_words"):
            value = getattr(self, name)
            integer = _integer(value)
            if integer is None or integer < 1:
                raise InvalidGeometry(f"{name} must be a positive integer, got {value!r}")
            object.__setattr__(self, name, integer)
        if self.min_width > self.max_width:
            raise InvalidGeometry(
                f"min_width ({self.min_width}) must not exceed max_width ({self.max_width})"
            )

    def frames_for_level(self, level: int) -> int:
        """How many frames a caption of this level is written from."""
        return {HIGH: self.high_frames, MEDIUM: self.medium_frames, LOW: self.low_frames}[
            _check_level(level)
        ]

    def caption_words(self, level: int) -> int:
        """The word limit written into the caption prompt of this level."""
        return self.low_caption_words if _check_level(level) == LOW else self.high_caption_words


def _integer(value: object) -> int | None:
    """``value`` as an int if it is an integer (numpy's included, bool excluded), else None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return None
    return int(value)


def _positive_real(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    number = float(value)
    return number if math.isfinite(number) and number > 0 else None


def _check_level(level: int) -> int:
    if level not in LEVELS:
        raise InvalidNode(f"level must be 1 (high), 2 (medium) or 3 (low), got {level!r}")
    return level


def width_for_duration(duration: float, config: TreeConfig) -> int:
    """The branching factor for a video of ``duration`` seconds (Python ``round``)."""
    raw = round(float((duration / config.segment_len_s) ** (1.0 / 3.0)))
    return max(config.min_width, min(config.max_width, raw))


def max_side(level: int) -> int:
    """Longest image side sent to the captioner for a level: 256 / 362 / 512 px."""
    scale = {HIGH: 4, MEDIUM: 2, LOW: 1}[_check_level(level)]
    return max(140, round(512 / math.sqrt(scale)))


def node_key(node: NodeId) -> str:
    """The stable text form of a node id, ``"h,m,l"`` (used in cache keys and URLs)."""
    return ",".join(str(part) for part in node)


def parse_node_key(key: str) -> NodeId:
    """Inverse of ``node_key``; raises ``InvalidNode`` for anything but 1-3 positive ints."""
    parts = key.split(",")
    if not 1 <= len(parts) <= 3 or not all(p.strip().isdigit() for p in parts):
        raise InvalidNode(f"a node key is 1 to 3 comma-separated positive integers, got {key!r}")
    node = tuple(int(p) for p in parts)
    if any(part < 1 for part in node):
        raise InvalidNode(f"node ids are 1-based, got {key!r}")
    return node


def _split(start: int, stop: int, parts: int, index: int) -> tuple[int, int]:
    """Chunk ``index`` (0-based) of ``np.array_split(range(start, stop), parts)``."""
    size, extra = divmod(stop - start, parts)
    first = start + index * size + min(index, extra)
    return first, first + size + (1 if index < extra else 0)


class VideoGeometry:
    """The caption tree of one video, from its frame count and average frame rate."""

    __slots__ = ("num_frames", "fps", "config", "duration", "width")

    def __init__(self, num_frames: int, fps: float, config: TreeConfig | None = None) -> None:
        frames = _integer(num_frames)
        if frames is None or frames < 1:
            raise InvalidGeometry(f"num_frames must be a positive integer, got {num_frames!r}")
        rate = _positive_real(fps)
        if rate is None:
            raise InvalidGeometry(f"fps must be a positive finite number, got {fps!r}")
        self.num_frames = frames
        self.fps = rate
        self.config = config if config is not None else TreeConfig()
        self.duration = frames / rate
        self.width = width_for_duration(self.duration, self.config)

    def __repr__(self) -> str:
        return f"VideoGeometry(num_frames={self.num_frames}, fps={self.fps}, width={self.width})"

    @property
    def duration_label(self) -> float:
        """The duration as the policy is told it: seconds rounded to 0.1."""
        return round(self.duration, 1)

    def validate(self, node: NodeId) -> NodeId:
        """``node`` as a tuple if it names a node of this tree; else raise ``InvalidNode``."""
        if not isinstance(node, tuple | list) or not 1 <= len(node) <= 3:
            raise InvalidNode(f"a node id has 1 to 3 parts, got {node!r}")
        parts = [_integer(part) for part in node]
        ids: list[int] = []
        for part in parts:
            if part is None:
                raise InvalidNode(f"node ids are integers, got {node!r}")
            if not 1 <= part <= self.width:
                raise InvalidNode(f"node ids run from 1 to {self.width}, got {node!r}")
            ids.append(part)
        return tuple(ids)

    def nodes(self, level: int) -> list[NodeId]:
        """Every node of a level, in time order."""
        return list(self.iter_nodes(level))

    def iter_nodes(self, level: int) -> Iterator[NodeId]:
        """Every node of a level, in time order, without building the list."""
        _check_level(level)
        ids = range(1, self.width + 1)
        if level == HIGH:
            yield from ((h,) for h in ids)
        elif level == MEDIUM:
            yield from ((h, m) for h in ids for m in ids)
        else:
            yield from ((h, m, lo) for h in ids for m in ids for lo in ids)

    def children(self, node: NodeId) -> list[NodeId]:
        """The next level's nodes inside ``node`` (none for a leaf)."""
        node = self.validate(node)
        if len(node) == LOW:
            return []
        return [(*node, i) for i in range(1, self.width + 1)]

    def frame_range(self, node: NodeId) -> tuple[int, int]:
        """The node's frames as a half-open ``[start, stop)`` index range (possibly empty)."""
        start, stop = 0, self.num_frames
        for part in self.validate(node):
            start, stop = _split(start, stop, self.width, part - 1)
        return start, stop

    def anchor_frame(self, node: NodeId) -> int:
        """The frame an empty node is sampled at: the last frame before it, within the video."""
        start, stop = self.frame_range(node)
        if stop > start:
            return start
        # Empty chunks come last in array_split, so the frame just before them belongs to
        # the nearest non-empty ancestor.
        return min(max(start - 1, 0), self.num_frames - 1)

    def frames_for_level(self, level: int) -> int:
        return self.config.frames_for_level(level)

    def sample_frames(self, node: NodeId, n: int | None = None) -> list[int]:
        """``np.linspace(first, last, n, dtype=int)`` over the node's frames.

        ``n`` defaults to the caption frame count of the node's level.
        """
        node = self.validate(node)
        count = self.frames_for_level(len(node)) if n is None else n
        if _integer(count) is None or count < 1:
            raise InvalidGeometry(f"the number of sampled frames must be >= 1, got {count!r}")
        start, stop = self.frame_range(node)
        if stop <= start:
            anchor = self.anchor_frame(node)
            return [anchor] * count
        return [int(i) for i in np.linspace(start, stop - 1, count, dtype=int)]

    def videoqa_frames(self, node: NodeId) -> list[int]:
        """The frames video_qa looks at for a leaf."""
        node = self.validate(node)
        if len(node) != LOW:
            raise InvalidNode(f"video_qa works on a low-level node (h, m, l), got {node!r}")
        return self.sample_frames(node, self.config.videoqa_frames)

    def time_label(self, frame_index: int) -> float:
        """A frame's time as the protocol writes it: seconds rounded to 0.1."""
        return round(frame_index / self.fps, 1)

    def frame_times(self, node: NodeId, n: int | None = None) -> list[float]:
        """Time labels of the node's sampled frames."""
        return [self.time_label(i) for i in self.sample_frames(node, n)]

    def span_labels(self, node: NodeId) -> tuple[float, float]:
        """(first, last) sampled caption frame times: how the policy sees the node's span."""
        frames = self.sample_frames(node)
        return self.time_label(frames[0]), self.time_label(frames[-1])

    def seconds(self, node: NodeId) -> tuple[float, float]:
        """The node's time range in seconds, ``(start / fps, stop / fps)``, for localization."""
        start, stop = self.frame_range(node)
        return start / self.fps, stop / self.fps

    def node_at(self, seconds: float, level: int) -> NodeId:
        """The node of ``level`` whose frames contain the frame shown at ``seconds``."""
        _check_level(level)
        if not math.isfinite(seconds):
            raise InvalidGeometry(f"a time must be a finite number, got {seconds!r}")
        frame = min(max(int(seconds * self.fps), 0), self.num_frames - 1)
        node: NodeId = ()
        start, stop = 0, self.num_frames
        for _ in range(level):
            for i in range(self.width):
                lo, hi = _split(start, stop, self.width, i)
                if lo <= frame < hi:
                    node, start, stop = (*node, i + 1), lo, hi
                    break
        return node

    def max_side(self, level: int) -> int:
        return max_side(level)

    @property
    def videoqa_max_side(self) -> int:
        return self.config.videoqa_max_side
