"""Timed statements, word overlap and visual measurements of the CPU profile."""

from __future__ import annotations

import numpy as np

from app.models.cpu.text import overlap, said, split_statements
from app.models.cpu.visual import brightness, describe_frames, dominant_colours, shot_changes


def solid(rgb: tuple[int, int, int], size: tuple[int, int] = (72, 128)) -> np.ndarray:
    return np.full((*size, 3), rgb, dtype=np.uint8)


def test_statements_split_at_time_leads_and_keep_their_time() -> None:
    text = ('This clip runs from 0.0s to 9.0s. At 1.5s someone says: "Hello. Bye." '
            'From 3.0s to 4.0s the screen shows the text "EXIT".')
    statements = split_statements(text)
    assert [s.time for s in statements] == [0.0, 1.5, 3.0]
    assert statements[1].text == 'At 1.5s someone says: "Hello. Bye."'


def test_prose_without_times_is_cut_into_bounded_statements() -> None:
    prose = " ".join(f"Sentence number {i} is here." for i in range(40))
    statements = split_statements(prose)
    assert len(statements) > 1
    assert all(len(s.text.split()) <= 60 and s.time is None for s in statements)
    assert " ".join(s.text for s in statements) == prose


def test_overlap_counts_content_words_only() -> None:
    assert overlap("a minute", "It only takes a minute.") == 1.0
    assert overlap("How long does it take?", "It takes an hour") == 0.5  # long, take
    assert overlap("the of a", "anything") == 0.0


def test_said_quotes_and_ends_the_line() -> None:
    assert said(2.0, 'He said "hi"') == "At 2.0s someone says: \"He said 'hi'.\""
    assert said(2.25, "Really?") == 'At 2.2s someone says: "Really?"'


def test_colours_and_brightness_of_solid_frames() -> None:
    assert dominant_colours(solid((10, 200, 20))) == ("green",)
    assert dominant_colours(solid((20, 40, 220))) == ("blue",)
    assert brightness(solid((0, 0, 0))) == "dark"
    assert brightness(solid((250, 250, 250))) == "bright"
    half = solid((230, 20, 20))
    half[:, 64:] = (250, 250, 250)
    assert set(dominant_colours(half)) == {"red", "white"}


def test_shot_changes_found_where_the_picture_jumps() -> None:
    frames = [solid((200, 30, 30))] * 3 + [solid((30, 30, 200))] * 3
    assert shot_changes(frames) == [3]
    segments = describe_frames(frames, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    assert [(s.start, s.end) for s in segments] == [(0.0, 2.0), (3.0, 5.0)]
    assert segments[0].colours == ("red",) and segments[1].colours == ("blue",)
    assert segments[0].motion == "with almost no motion"
    assert segments[1].describe().startswith("From 3.0s to 5.0s the picture is")


def test_many_cuts_are_merged_into_a_few_segments() -> None:
    frames = [solid((200, 30, 30)) if i % 2 else solid((30, 30, 200)) for i in range(20)]
    segments = describe_frames(frames, [float(i) for i in range(20)])
    assert 1 <= len(segments) <= 6
    assert segments[0].start == 0.0 and segments[-1].end == 19.0
    assert describe_frames([], []) == []
