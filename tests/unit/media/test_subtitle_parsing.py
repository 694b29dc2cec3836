"""Pure parsing: SRT/WebVTT text to timed lines, overlap queries, output sizes."""

from __future__ import annotations

import pytest

from app.core.ports import SubtitleLine
from app.media.cli_decode import select_expr as _select_expr
from app.media.ffmpeg import MediaError
from app.media.frames import scaled_size
from app.media.subtitles import (
    lines_at,
    lines_overlapping,
    parse_srt,
    parse_subtitles,
    parse_vtt,
)

SRT = """1
00:00:01,000 --> 00:00:02,500
<i>Hello</i> <b>there</b>

2
00:00:02,000 --> 00:00:04,000
{\\an8}Two
lines

3
01:02:03,040 --> 01:02:04,000
Late &amp; last
"""


def test_srt_cues_with_tags_stripped_and_lines_joined() -> None:
    assert parse_srt(SRT) == [
        SubtitleLine(1.0, 2.5, "Hello there"),
        SubtitleLine(2.0, 4.0, "Two lines"),
        SubtitleLine(3723.04, 3724.0, "Late & last"),
    ]


def test_srt_bytes_with_bom_and_crlf() -> None:
    data = ("\ufeff" + SRT).replace("\n", "\r\n").encode("utf-8")
    assert [ln.text for ln in parse_subtitles(data, "movie.SRT")] == [
        "Hello there", "Two lines", "Late & last"]


def test_srt_without_numbers_dot_millis_and_sorted_output() -> None:
    text = "00:00:05.5 --> 00:00:06.000\nlater\n\n00:00:01,000 --> 00:00:02,000\nearlier\n"
    assert parse_srt(text) == [SubtitleLine(1.0, 2.0, "earlier"), SubtitleLine(5.5, 6.0, "later")]


def test_cp1252_and_utf16_files() -> None:
    text = "1\n00:00:01,000 --> 00:00:02,000\nCaf\u00e9 na\u00efve\n"
    assert parse_subtitles(text.encode("cp1252"), "srt")[0].text == "Caf\u00e9 na\u00efve"
    assert parse_subtitles(text.encode("utf-16"), "srt")[0].text == "Caf\u00e9 na\u00efve"


VTT = """WEBVTT - a title

NOTE this is a comment
spanning lines

STYLE
::cue { color: yellow }

intro
00:01.000 --> 00:02.000 align:start position:10%
<v Roger>Hi <c.loud>you</c></v>

00:00:03.250 --> 00:00:04.000
<00:00:03.500>karaoke &lt;ok&gt;&nbsp;done
"""


def test_vtt_cues_ids_settings_notes_and_styles() -> None:
    assert parse_vtt(VTT) == [
        SubtitleLine(1.0, 2.0, "Hi you"),
        SubtitleLine(3.25, 4.0, "karaoke <ok>\u00a0done"),
    ]
    assert parse_subtitles(VTT.encode(), "talk.vtt") == parse_vtt(VTT)


def test_empty_files_have_no_lines() -> None:
    assert parse_srt("") == []
    assert parse_vtt("WEBVTT\n\n") == []


@pytest.mark.parametrize(("data", "name"), [
    (b"this is not a subtitle file\nat all\n", "a.srt"),
    (b"1\n00:00:01,000 -> 00:00:02,000\nmissing arrow\n", "a.srt"),
    (b"1\n00:00:05,000 --> 00:00:02,000\nends before it starts\n", "a.srt"),
    (b"1\n00:99:01,000 --> 00:99:02,000\nbad minutes\n", "a.srt"),
    (b"\x00\x01\x02binary\x00garbage", "a.srt"),
    (b"00:01.000 --> 00:02.000\nno header\n", "a.vtt"),
    (b"1\n00:00:01,000 --> 00:00:02,000\nfine\n", "a.ass"),
])
def test_garbage_is_a_bad_subtitles_error(data: bytes, name: str) -> None:
    with pytest.raises(MediaError) as error:
        parse_subtitles(data, name)
    assert error.value.code == "bad_subtitles"


def test_overlap_queries_are_closed_intervals() -> None:
    lines = [SubtitleLine(4.0, 6.0, "b"), SubtitleLine(0.0, 2.0, "a"),
             SubtitleLine(5.0, 9.0, "c")]
    assert [ln.text for ln in lines_at(lines, 2.0)] == ["a"]
    assert [ln.text for ln in lines_at(lines, 3.0)] == []
    assert [ln.text for ln in lines_at(lines, 5.5)] == ["b", "c"]
    assert [ln.text for ln in lines_overlapping(lines, 1.0, 4.0)] == ["a", "b"]
    assert [ln.text for ln in lines_overlapping(lines, 9.0, 20.0)] == ["c"]


@pytest.mark.parametrize(("size", "max_side", "expected"), [
    ((1280, 720), 512, (512, 288)),
    ((720, 1280), 256, (144, 256)),
    ((1280, 720), 4096, (1280, 720)),
    ((161, 97), 64, (64, 39)),
    ((5000, 3), 100, (100, 1)),
])
def test_scaled_size_shrinks_longest_side_only(size: tuple[int, int], max_side: int,
                                               expected: tuple[int, int]) -> None:
    assert scaled_size(*size, max_side) == expected


def test_select_expression_merges_runs_and_stays_shallow() -> None:
    assert _select_expr([0]) == "eq(n,0)"
    assert _select_expr([0, 1, 2, 5]) == "(between(n,0,2)+eq(n,5))"
    expr = _select_expr(list(range(0, 4000, 2)))
    depth = max_depth = 0
    for char in expr:
        depth += {"(": 1, ")": -1}.get(char, 0)
        max_depth = max(max_depth, depth)
    assert max_depth <= 13 and expr.count("eq(n,") == 2000
