"""Naming decoded frames by their presentation time (``FrameClock``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# A timestamp is a frame of a constant-rate video when it lies this close (in frames) to a
# point of the grid ``start + index / fps``; farther off, the grid cannot name it safely.
GRID_TOLERANCE = 0.45
TIME_TABLE_TOLERANCE_S = 2e-6  # ffprobe prints timestamps to the microsecond


class InProcessUnusable(Exception):
    """This pass cannot vouch for its frames; decode them another way."""


@dataclass(frozen=True, slots=True)
class FrameClock:
    """Names frames by presentation time: frame ``i`` of a constant-rate video is at
    ``start + i / fps``; a variable-rate one has its sorted timestamps in ``stamps``."""

    start_s: float
    fps: float
    num_frames: int
    stamps: np.ndarray | None = None

    def time_of(self, index: int) -> float:
        if self.stamps is not None:
            return float(self.stamps[min(index, len(self.stamps) - 1)])
        return self.start_s + index / self.fps

    def seek_time(self, index: int) -> float:
        """A time between frame ``index - 1`` and frame ``index``."""
        if index <= 0:
            return self.time_of(0) - 0.5 / self.fps
        here, before = self.time_of(index), self.time_of(index - 1)
        gap = here - before if here > before else 1.0 / self.fps
        return here - gap / 2

    def frames_at(self, seconds: float) -> range | None:
        """The indices of the frames shown at ``seconds`` (several when frames share a
        timestamp), or None for a time outside the counted frames."""
        if self.stamps is None:
            position = (seconds - self.start_s) * self.fps
            index = round(position)
            if abs(position - index) > GRID_TOLERANCE:
                raise InProcessUnusable(f"timestamp {seconds:.6f} s is off the frame grid")
            return range(index, index + 1) if 0 <= index < self.num_frames else None
        low = int(np.searchsorted(self.stamps, seconds - TIME_TABLE_TOLERANCE_S, "left"))
        high = int(np.searchsorted(self.stamps, seconds + TIME_TABLE_TOLERANCE_S, "right"))
        if low >= high:
            if low == 0 or low >= len(self.stamps):
                return None
            raise InProcessUnusable(f"timestamp {seconds:.6f} s is not in the frame table")
        return range(low, min(high, self.num_frames)) if low < self.num_frames else None
