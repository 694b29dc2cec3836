"""Subtitles from files beside the video and from streams inside it, via real ffmpeg."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.core.ports import SubtitleLine
from app.media.ffmpeg import MediaError
from app.media.frames import FrameReader
from app.media.probe import probe_video
from app.media.subtitles import (
    extract_embedded_subtitles,
    find_sidecar_subtitles,
    lines_at,
    read_sidecar_subtitles,
)


def test_embedded_srt_stream(subtitled_mkv: Path) -> None:
    probe = probe_video(subtitled_mkv)
    assert extract_embedded_subtitles(subtitled_mkv, probe) == [
        SubtitleLine(1.0, 2.5, "Hello there"), SubtitleLine(5.0, 6.0, "Second line")]


def test_embedded_mov_text_stream(subtitled_mp4: Path) -> None:
    probe = probe_video(subtitled_mp4)
    assert extract_embedded_subtitles(subtitled_mp4, probe) == [
        SubtitleLine(0.5, 3.0, "In the box")]


def test_video_without_subtitle_streams_has_no_lines(cfr_mp4: Path) -> None:
    assert extract_embedded_subtitles(cfr_mp4, probe_video(cfr_mp4)) == []


def test_sidecar_files_are_found_and_parsed(tmp_path: Path, cfr_mp4: Path) -> None:
    video = tmp_path / "talk.mp4"
    shutil.copyfile(cfr_mp4, video)
    assert find_sidecar_subtitles(video) is None
    assert read_sidecar_subtitles(video) == []
    tagged = tmp_path / "talk.en.vtt"
    tagged.write_text("WEBVTT\n\n00:02.000 --> 00:03.000\nfrom the vtt\n", encoding="utf-8")
    assert find_sidecar_subtitles(video) == tagged
    exact = tmp_path / "talk.srt"
    exact.write_bytes(b"\xef\xbb\xbf1\r\n00:00:00,000 --> 00:00:01,000\r\nfrom the srt\r\n")
    assert find_sidecar_subtitles(video) == exact
    assert read_sidecar_subtitles(video) == [SubtitleLine(0.0, 1.0, "from the srt")]
    exact.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00binary")
    with pytest.raises(MediaError) as error:
        read_sidecar_subtitles(video)
    assert error.value.code == "bad_subtitles"


def test_lines_map_to_frame_times_of_the_caption_protocol(subtitled_mkv: Path) -> None:
    """Frame i is labelled round(i / fps, 1); its text part gets the lines overlapping
    that label (frame 63 is labelled 2.5 s, the end of the first line)."""
    probe = probe_video(subtitled_mkv)
    lines = extract_embedded_subtitles(subtitled_mkv, probe)
    reader = FrameReader(subtitled_mkv, probe)
    by_frame = {i: [ln.text for ln in lines_at(lines, round(i / probe.fps, 1))]
                for i in (0, 25, 50, 63, 64, 125, 150, 151)}
    assert by_frame == {0: [], 25: ["Hello there"], 50: ["Hello there"],
                        63: ["Hello there"], 64: [], 125: ["Second line"],
                        150: ["Second line"], 151: ["Second line"]}
    # The remux started the video clock at 23 ms; lines are timed from that first frame.
    assert reader.frame_time(125) - probe.video_start_time_s == pytest.approx(5.0)
