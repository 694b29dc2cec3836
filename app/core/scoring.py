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

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

from app.core.intervals import Interval, merge_intervals, overlap_length, total_length
from app.core.trace import Trace, TraceRound

ANSWER_WEIGHT = 1.0
F1_WEIGHT = 1.0
REPEAT_WEIGHT = -0.2
CLUE_MERGE_GAP_S = 5.0


def merge_clues(clues: Sequence[Sequence[float]], gap: float = CLUE_MERGE_GAP_S
                ) -> list[Interval]:
    """Clue intervals as the reward counts them: merged when at most ``gap`` seconds apart."""
    return merge_intervals(clues, gap=gap)


def answer_matches(predicted: str | None, truth: str) -> bool:
    """Exact match after stripping whitespace; no answer never matches."""
    return predicted is not None and predicted.strip() == truth.strip()


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
    clue_union = merge_clues(clues, gap=gap)
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


def visited_calls(rounds: Iterable[TraceRound]) -> list[tuple[str | None, Interval]]:
    """(node key, time range) of every parsed get_caption call, served or not: what the
    localization F1 and the repeat penalty are computed from."""
    return [
        (rnd.node_key, (rnd.start, rnd.end))
        for rnd in rounds
        if rnd.kind == "get_caption" and rnd.start is not None and rnd.end is not None
    ]


def score_rounds(answer: str | None, rounds: Iterable[TraceRound], truth: str,
                 clues: Sequence[Sequence[float]]) -> Score:
    """Score a navigation from its answer and rounds (as a job's trace steps hold them)."""
    return score(predicted=answer, truth=truth, visited=visited_calls(rounds), clues=clues)


def score_trace(trace: Trace, truth: str, clues: Sequence[Sequence[float]]) -> Score:
    """Score a finished navigation: every parsed get_caption call counts, served or not."""
    return score_rounds(trace.answer, trace.rounds, truth, clues)
