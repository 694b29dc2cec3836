"""probe_video on generated videos: what it reports and which limits it enforces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.media.ffmpeg import MediaError
from app.media.probe import probe_video


def test_constant_rate_mp4_with_audio(cfr_mp4: Path) -> None:
    probe = probe_video(cfr_mp4)
    assert probe.container.startswith("mov,mp4")
    assert (probe.num_frames, probe.frame_count_method) == (300, "nb_frames")
    assert probe.fps == 25.0 and probe.duration_s == pytest.approx(12.0, abs=0.05)
    assert (probe.width, probe.height, probe.rotation) == (160, 120, 0)
    assert probe.codec == "h264" and not probe.variable_frame_rate
    assert probe.has_audio and [s.codec for s in probe.audio_streams] == ["aac"]
    assert probe.subtitle_streams == ()
    data = json.loads(json.dumps(probe.to_dict()))
    assert data["num_frames"] == 300 and data["audio_streams"][0]["codec"] == "aac"


def test_video_without_audio(vfr_mkv: Path) -> None:
    probe = probe_video(vfr_mkv)
    assert not probe.has_audio and probe.audio_streams == ()


def test_matroska_frames_are_counted_and_vfr_detected(vfr_mkv: Path) -> None:
    probe = probe_video(vfr_mkv)
    assert (probe.num_frames, probe.frame_count_method) == (120, "counted")
    assert probe.variable_frame_rate
    # 120 frames over about 7.7 s: the average rate, not the container's nominal 25 fps.
    assert probe.fps == pytest.approx(120 / probe.duration_s)
    assert probe.fps < 20


def test_vfr_mp4_is_flagged(vfr_mp4: Path) -> None:
    probe = probe_video(vfr_mp4)
    assert probe.frame_count_method == "nb_frames" and probe.variable_frame_rate


def test_rotation_swaps_the_displayed_size(rotated_mp4: Path) -> None:
    probe = probe_video(rotated_mp4)
    assert probe.rotation in (90, 270)
    assert (probe.width, probe.height) == (120, 160)


def test_nonzero_start_times_are_reported(mpegts: Path, offset_mp4: Path) -> None:
    ts = probe_video(mpegts)
    assert ts.start_time_s > 1.0 and ts.video_start_time_s >= ts.start_time_s
    assert ts.num_frames == 120
    assert probe_video(offset_mp4).video_start_time_s == pytest.approx(7.3, abs=0.01)


def test_odd_size(odd_mp4: Path) -> None:
    probe = probe_video(odd_mp4)
    assert (probe.width, probe.height, probe.num_frames) == (161, 97, 60)


def test_subtitle_streams_are_listed(subtitled_mkv: Path, subtitled_mp4: Path) -> None:
    mkv = probe_video(subtitled_mkv)
    assert [(s.codec, s.language) for s in mkv.subtitle_streams] == [("subrip", "eng")]
    mp4 = probe_video(subtitled_mp4)
    assert [s.codec for s in mp4.subtitle_streams] == ["mov_text"]


@pytest.mark.parametrize("fixture", ["audio_only", "mp3_with_cover"])
def test_audio_files_have_no_video_stream(fixture: str, request: pytest.FixtureRequest) -> None:
    with pytest.raises(MediaError) as error:
        probe_video(request.getfixturevalue(fixture))
    assert error.value.code == "no_video_stream" and error.value.kind == "invalid"


def test_limits_from_settings_are_enforced(cfr_mp4: Path) -> None:
    with pytest.raises(MediaError) as too_long:
        probe_video(cfr_mp4, max_duration_s=10.0)
    assert (too_long.value.code, too_long.value.kind) == ("video_too_long", "too_large")
    assert too_long.value.details["max_duration_s"] == 10.0
    with pytest.raises(MediaError) as too_big:
        probe_video(cfr_mp4, max_pixels=160 * 119)
    assert (too_big.value.code, too_big.value.kind) == ("dimensions_too_large", "too_large")
    assert probe_video(cfr_mp4, max_duration_s=12.5, max_pixels=160 * 120).num_frames == 300
