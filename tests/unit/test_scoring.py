"""The reward of spec section 7: answer, localization F1 and repeat penalty."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.intervals import InvalidInterval
from app.core.scoring import (
    answer_matches,
    localization,
    merge_clues,
    repeat_penalty,
    score,
    score_trace,
)
from app.core.trace import Trace, TraceRound


def test_answer_is_an_exact_match_after_strip() -> None:
    assert answer_matches(" B\n", "B")
    assert not answer_matches("b", "B")
    assert not answer_matches("B. Blue", "B")
    assert not answer_matches(None, "A")  # no answer is never turned into a guess


def test_clues_closer_than_five_seconds_merge() -> None:
    assert merge_clues([(20, 30), (0, 10), (16, 17)]) == [(0.0, 10.0), (16.0, 30.0)]
    assert merge_clues([(0, 10), (15, 16)]) == [(0.0, 16.0)]  # a gap of exactly 5 s
    assert merge_clues([(0, 10), (15.5, 16)]) == [(0.0, 10.0), (15.5, 16.0)]
    assert merge_clues([(0, 100), (10, 20), (104, 110)]) == [(0.0, 110.0)]
    assert merge_clues([]) == []


def test_localization_against_clues() -> None:
    # One visited node 0-40 s, clue 30-50 s: overlap 10 of 20 clue seconds, 10 of 40 visited.
    loc = localization([(0, 40)], [(30, 50)])
    assert loc.coverage == pytest.approx(0.5)
    assert loc.precision == pytest.approx(0.25)
    assert loc.f1 == pytest.approx(2 * 0.5 * 0.25 / 0.75)
    perfect = localization([(30, 40), (40, 50)], [(30, 50)])
    assert (perfect.coverage, perfect.precision, perfect.f1) == (1.0, 1.0, 1.0)
    # Visiting the same range twice does not inflate coverage past 1.
    twice = localization([(30, 50), (30, 50)], [(30, 50)])
    assert twice.coverage == 1.0 and twice.precision == 1.0


def test_zero_length_edge_cases() -> None:
    assert localization([], [(0, 10)]).f1 == 0.0
    assert localization([(0, 10)], []).f1 == 0.0
    assert localization([(5, 5)], [(5, 5)]).f1 == 0.0
    assert localization([(0, 10)], [(20, 30)]).f1 == 0.0
    assert repeat_penalty([]) == 0.0


def test_repeat_penalty() -> None:
    assert repeat_penalty(["1,2", "1,2,3"]) == 0.0
    assert repeat_penalty(["1,2", "1,2", "1,2", "3,1"]) == pytest.approx(1.0)


def test_total_score_weights() -> None:
    result = score(
        predicted="A", truth="A",
        visited=[("1,1", (0.0, 40.0)), ("1,1", (0.0, 40.0))],
        clues=[(30.0, 50.0)],
    )
    assert result.answer == 1.0 and result.repeat == 1.0
    assert result.total == pytest.approx(1.0 + result.f1 - 0.2)
    wrong = score(predicted=None, truth="A", visited=[], clues=[(0.0, 1.0)])
    assert wrong.total == 0.0


def test_score_trace_uses_each_get_caption_call() -> None:
    trace = Trace(question="q", options=[], num_frames=18000, fps=30.0, width=4,
                  duration=600.0, max_rounds=30, answer="B", outcome="answered")
    trace.rounds = [
        TraceRound(0, "get_caption", "r", node=[1, 2], node_key="1,2", start=37.5, end=75.0,
                   observation="o"),
        TraceRound(1, "invalid", "junk"),
        TraceRound(2, "video_qa", "r", node=[1, 2, 3], node_key="1,2,3", start=56.25,
                   end=65.625, observation="o"),
        TraceRound(3, "get_caption", "r", node=[1, 2], node_key="1,2", start=37.5, end=75.0,
                   observation="o"),
        TraceRound(4, "answer", "r", answer="B"),
    ]
    result = score_trace(trace, "B", [(60.0, 70.0), (72.0, 80.0)])
    # clues merge to 60-80 s; visited 37.5-75 s: overlap 15 of 20 and of 37.5
    assert result.coverage == pytest.approx(0.75)
    assert result.precision == pytest.approx(15 / 37.5)
    assert result.repeat == pytest.approx(1.0)
    assert result.total == pytest.approx(1.0 + result.f1 - 0.2)


@pytest.mark.parametrize("bad", [[(10, 5)], [(0, math.nan)], [(0, math.inf)], [(1,)],
                                 [(1, 2, 3)], [("a", "b")], [None]])
def test_bad_intervals_raise_a_typed_error(bad: list[object]) -> None:
    with pytest.raises(InvalidInterval):
        localization([(0, 1)], bad)  # type: ignore[arg-type]


intervals = st.lists(
    st.tuples(st.floats(0, 1000), st.floats(0, 100)).map(lambda t: (t[0], t[0] + t[1])),
    max_size=8,
)


@given(visited=intervals, clues=intervals)
@settings(max_examples=100, deadline=None)
def test_localization_figures_stay_between_zero_and_one(
    visited: list[tuple[float, float]], clues: list[tuple[float, float]]
) -> None:
    loc = localization(visited, clues)
    for value in (loc.coverage, loc.precision, loc.f1):
        assert 0.0 <= value <= 1.0 + 1e-9
    assert loc.f1 <= max(loc.coverage, loc.precision) + 1e-9
    merged = merge_clues(clues)
    assert all(b[0] - a[1] > 5.0 for a, b in zip(merged, merged[1:], strict=False))
