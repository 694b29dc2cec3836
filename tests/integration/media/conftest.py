"""Generated videos for the media tests, built once per session with real ffmpeg."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.media.videogen import ffmpeg_lavfi, make_indexed_video

# Frame N is shown at N*40 ms, plus 0.5 s from frame 30 on and a growing gap from 60 on.
VFR_PTS = "(N*0.04+if(gte(N\\,30)\\,0.5\\,0)+if(gte(N\\,60)\\,(N-60)*0.02\\,0))/TB"
X264_444 = ("-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", "-g", "12",
            "-pix_fmt", "yuv444p")


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def cfr_mp4(media_dir: Path) -> Path:
    """300 frames at 25 fps, keyframe every 25 frames, B-frames, AAC audio."""
    return make_indexed_video(media_dir / "cfr.mp4", num_frames=300, audio=True)


@pytest.fixture(scope="session")
def vfr_mkv(media_dir: Path) -> Path:
    return make_indexed_video(media_dir / "vfr.mkv", num_frames=120, pts_expr=VFR_PTS)


@pytest.fixture(scope="session")
def vfr_mp4(media_dir: Path) -> Path:
    return make_indexed_video(media_dir / "vfr.mp4", num_frames=120, pts_expr=VFR_PTS)


@pytest.fixture(scope="session")
def mpegts(media_dir: Path) -> Path:
    """MPEG-TS starts its clock at 1.4 s and seeks by byte position."""
    return make_indexed_video(media_dir / "clip.ts", num_frames=120)


@pytest.fixture(scope="session")
def offset_mp4(media_dir: Path) -> Path:
    """An MP4 whose timestamps start at 7.3 s."""
    return make_indexed_video(media_dir / "offset.mp4", num_frames=100,
                              extra=("-output_ts_offset", "7.3"))


@pytest.fixture(scope="session")
def webm(media_dir: Path) -> Path:
    return make_indexed_video(media_dir / "clip.webm", num_frames=100,
                              codec=("-c:v", "libvpx", "-g", "20", "-b:v", "800k"))


@pytest.fixture(scope="session")
def avi(media_dir: Path) -> Path:
    return make_indexed_video(media_dir / "clip.avi", num_frames=80)


@pytest.fixture(scope="session")
def odd_mp4(media_dir: Path) -> Path:
    """161x97 pixels: odd sizes need 4:4:4 chroma to encode at all."""
    return make_indexed_video(media_dir / "odd.mp4", num_frames=60, size=(161, 97),
                              codec=X264_444)


@pytest.fixture(scope="session")
def rotated_mp4(media_dir: Path, cfr_mp4: Path) -> Path:
    """The 160x120 clip with a display matrix turning it to 120x160 (phone video)."""
    return ffmpeg_lavfi(media_dir / "rotated.mp4", "-i", str(cfr_mp4), "-c", "copy",
                        "-metadata:s:v:0", "rotate=90")


@pytest.fixture(scope="session")
def audio_only(media_dir: Path) -> Path:
    return ffmpeg_lavfi(media_dir / "audio.m4a", "-f", "lavfi", "-i",
                        "sine=frequency=300:duration=2", "-c:a", "aac")


@pytest.fixture(scope="session")
def mp3_with_cover(media_dir: Path) -> Path:
    """An MP3 whose only picture is cover art, which is not a video stream."""
    cover = ffmpeg_lavfi(media_dir / "cover.png", "-f", "lavfi", "-i",
                         "color=c=red:s=64x64:d=0.04", "-frames:v", "1")
    return ffmpeg_lavfi(media_dir / "song.mp3", "-f", "lavfi", "-i",
                        "sine=frequency=300:duration=2", "-i", str(cover), "-map", "0:a",
                        "-map", "1:v", "-c:v", "png", "-disposition:v", "attached_pic",
                        "-c:a", "libmp3lame")


@pytest.fixture(scope="session")
def subtitled_mkv(media_dir: Path, cfr_mp4: Path) -> Path:
    """The clip with an embedded SRT stream (language 'eng')."""
    srt = media_dir / "embedded.srt"
    srt.write_text("1\n00:00:01,000 --> 00:00:02,500\n<i>Hello</i> there\n\n"
                   "2\n00:00:05,000 --> 00:00:06,000\nSecond line\n", encoding="utf-8")
    return ffmpeg_lavfi(media_dir / "subtitled.mkv", "-i", str(cfr_mp4), "-i", str(srt),
                        "-map", "0", "-map", "1", "-c", "copy", "-c:s", "srt",
                        "-metadata:s:s:0", "language=eng")


@pytest.fixture(scope="session")
def subtitled_mp4(media_dir: Path, cfr_mp4: Path) -> Path:
    """The clip with an embedded mov_text stream, the MP4 text subtitle codec."""
    srt = media_dir / "movtext.srt"
    srt.write_text("1\n00:00:00,500 --> 00:00:03,000\nIn the box\n", encoding="utf-8")
    return ffmpeg_lavfi(media_dir / "subtitled.mp4", "-i", str(cfr_mp4), "-i", str(srt),
                        "-map", "0", "-map", "1", "-c", "copy", "-c:s", "mov_text")
