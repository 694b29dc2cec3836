"""Time intervals in seconds: checked, merged, measured (the trace's visited share and the
reward's localization both use them)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from app.errors import InvalidInput

Interval = tuple[float, float]


class InvalidInterval(InvalidInput):
    """A time interval that is not two finite seconds with start <= end."""

    code = "invalid_interval"


def checked_intervals(intervals: Sequence[Sequence[float]]) -> list[Interval]:
    checked: list[Interval] = []
    for interval in intervals:
        try:
            start, end = (float(value) for value in interval)
        except (TypeError, ValueError):
            raise InvalidInterval(f"an interval is (start, end), got {interval!r}") from None
        if not (math.isfinite(start) and math.isfinite(end)) or end < start:
            raise InvalidInterval(f"an interval needs finite start <= end, got {interval!r}")
        checked.append((start, end))
    return checked


def merge_intervals(intervals: Sequence[Sequence[float]], gap: float) -> list[Interval]:
    """Sort and merge intervals that overlap or are at most ``gap`` seconds apart."""
    merged: list[Interval] = []
    for start, end in sorted(checked_intervals(intervals)):
        if merged and start - merged[-1][1] <= gap:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def total_length(intervals: Sequence[Interval]) -> float:
    """Summed length of disjoint intervals."""
    return sum(end - start for start, end in intervals)


def overlap_length(a: Sequence[Interval], b: Sequence[Interval]) -> float:
    """Length of the intersection of two sets of disjoint intervals."""
    total = 0.0
    for a_start, a_end in a:
        for b_start, b_end in b:
            total += max(0.0, min(a_end, b_end) - max(a_start, b_start))
    return total
