"""The LongVideo-R1 reward (spec section 7): answer match, localization F1, repeat penalty.

``score = 1.0 * answer + 1.0 * F1 - 0.2 * repeat``. Visited ranges are the time ranges of
the nodes the policy asked ``get_caption`` for (the exact frame ranges of the tree, which
differ from the reference's ``duration / width**k`` slices by under a frame per boundary);
clue intervals closer than 5 s are merged.
Overlap is measured between the union of visited ranges and the merged clues, so a range
visited twice is not counted twice (the repeat penalty charges for that) and coverage
never exceeds 1.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.errors import InvalidInput

if TYPE_CHECKING:  # trace.py uses the interval helpers below at runtime
    from app.core.trace import Trace

Interval = tuple[float, float]

ANSWER_WEIGHT = 1.0
F1_WEIGHT = 1.0
REPEAT_WEIGHT = -0.2
CLUE_MERGE_GAP_S = 5.0


class InvalidInterval(InvalidInput):
    """A time interval that is not two finite seconds with start <= end."""

    code = "invalid_interval"


def _checked(intervals: Sequence[Sequence[float]]) -> list[Interval]:
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


def answer_matches(predicted: str | None, truth: str) -> bool:
    """Exact match after stripping whitespace; no answer never matches."""
    return predicted is not None and predicted.strip() == truth.strip()


def merge_intervals(
    intervals: Sequence[Sequence[float]], gap: float = CLUE_MERGE_GAP_S
) -> list[Interval]:
    """Sort and merge intervals that overlap or are at most ``gap`` seconds apart."""
    merged: list[Interval] = []
    for start, end in sorted(_checked(intervals)):
        if merged and start - merged[-1][1] <= gap:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def total_length(intervals: Sequence[Interval]) -> float:
    return sum(end - start for start, end in intervals)


def overlap_length(a: Sequence[Interval], b: Sequence[Interval]) -> float:
    """Length of the intersection of two sets of disjoint intervals."""
    total = 0.0
    for a_start, a_end in a:
        for b_start, b_end in b:
            total += max(0.0, min(a_end, b_end) - max(a_start, b_start))
    return total


@dataclass(frozen=True, slots=True)
class Localization:
    coverage: float  # share of the clue time the policy visited
    precision: float  # share of the visited time that is clue time
    f1: float


def localization(
    visited: Sequence[Sequence[float]], clues: Sequence[Sequence[float]],
    gap: float = CLUE_MERGE_GAP_S,
) -> Localization:
    """Coverage, precision and their F1 of visited ranges against clue intervals."""
    visited_union = merge_intervals(visited, gap=0.0)
    clue_union = merge_intervals(clues, gap=gap)
    overlap = overlap_length(visited_union, clue_union)
    clue_len = total_length(clue_union)
    visited_len = total_length(visited_union)
    coverage = overlap / clue_len if clue_len > 0 else 0.0
    precision = overlap / visited_len if visited_len > 0 else 0.0
    f1 = 2 * coverage * precision / (coverage + precision) if coverage + precision > 0 else 0.0
    return Localization(coverage, precision, f1)


def repeat_penalty(calls: Sequence[Hashable]) -> float:
    """(calls - distinct calls) / distinct calls; 0 without calls."""
    distinct = len(set(calls))
    return (len(calls) - distinct) / distinct if distinct else 0.0


@dataclass(frozen=True, slots=True)
class Score:
    answer: float
    coverage: float
    precision: float
    f1: float
    repeat: float
    total: float


def score(
    *,
    predicted: str | None,
    truth: str,
    visited: Sequence[tuple[Hashable, Sequence[float]]],
    clues: Sequence[Sequence[float]],
) -> Score:
    """The reward for one question; ``visited`` holds (call key, time range) per get_caption."""
    answer = 1.0 if answer_matches(predicted, truth) else 0.0
    loc = localization([interval for _, interval in visited], clues)
    repeat = repeat_penalty([key for key, _ in visited])
    total = ANSWER_WEIGHT * answer + F1_WEIGHT * loc.f1 + REPEAT_WEIGHT * repeat
    return Score(answer, loc.coverage, loc.precision, loc.f1, repeat, total)


def score_trace(trace: Trace, truth: str, clues: Sequence[Sequence[float]]) -> Score:
    """Score a finished navigation: every parsed get_caption call counts, served or not."""
    visited = [
        (rnd.node_key, (rnd.start, rnd.end))
        for rnd in trace.rounds
        if rnd.kind == "get_caption" and rnd.start is not None and rnd.end is not None
    ]
    return score(predicted=trace.answer, truth=truth, visited=visited, clues=clues)
