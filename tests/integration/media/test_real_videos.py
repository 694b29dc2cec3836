"""The media layer on the two real test videos (fetched at test time, never committed)."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

from app.media.ffmpeg import MediaError
from app.media.frames import FrameReader, scaled_size
from app.media.probe import probe_video
from app.media.speech import transcribe
from scripts.fetch_videos import fetch_video

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bbb() -> Path:
    return fetch_video("bbb")


@pytest.fixture(scope="module")
def narrated() -> Path:
    return fetch_video("narrated")


def decode_sequentially(path: Path, indices: list[int], size: tuple[int, int]) -> list[bytes]:
    """Reference frames: the ffmpeg CLI decodes from the very first frame, no seeking, and
    counts frames."""
    width, height = size
    select = "+".join(f"eq(n,{i})" for i in sorted(set(indices)))
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-threads", "2", "-i", str(path), "-map", "0:v:0",
         "-vf", f"select='{select}',scale={width}:{height}:flags=area",
         "-fps_mode", "passthrough", "-frames:v", str(len(set(indices))),
         "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"],
        check=True, capture_output=True, timeout=300).stdout
    frame = width * height * 3
    by_index = {i: out[k * frame:(k + 1) * frame] for k, i in enumerate(sorted(set(indices)))}
    return [by_index[i] for i in indices]


def decode_sequentially_in_process(path: Path, indices: list[int], size: tuple[int, int]
                                   ) -> list[bytes]:
    """Reference frames for the in-process path: PyAV decodes every frame from the first,
    no seeking, counts them, and scales the wanted ones as the reader does."""
    width, height = size
    wanted = set(indices)
    by_index: dict[int, bytes] = {}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 2
        for count, frame in enumerate(container.decode(stream)):
            if count in wanted:
                by_index[count] = frame.to_ndarray(width=width, height=height, format="rgb24",
                                                   interpolation="AREA").tobytes()
            if count >= max(wanted):
                break
    return [by_index[i] for i in indices]


def test_bbb_probe(bbb: Path) -> None:
    probe = probe_video(bbb)
    assert (probe.width, probe.height, probe.codec) == (1280, 720, "h264")
    assert (probe.num_frames, probe.frame_count_method, probe.fps) == (14315, "nb_frames", 24.0)
    assert probe.duration_s == pytest.approx(596.46, abs=0.05)
    assert probe.has_audio and not probe.variable_frame_rate


# Frames inside and across keyframe intervals (keyframes every 90 frames, half of them not
# IDR), single and in one request.
BBB_INDICES = sorted(random.Random(7).sample(range(1, 2400), 10)) + [0, 95, 96, 97, 2399]


@pytest.mark.parametrize("in_process", [True, False], ids=["in-process", "ffmpeg-cli"])
def test_bbb_seeking_reads_the_same_pixels_as_sequential_decoding(bbb: Path, in_process: bool
                                                                 ) -> None:
    probe = probe_video(bbb)
    reader = FrameReader(bbb, probe, in_process=in_process)
    size = scaled_size(probe.width, probe.height, 128)
    reference = decode_sequentially_in_process if in_process else decode_sequentially
    expected = reference(bbb, BBB_INDICES, size)
    alone = [reader.read([i], 128)[0] for i in BBB_INDICES]
    together = reader.read(BBB_INDICES, 128)
    assert [f.shape for f in alone] == [(72, 128, 3)] * len(BBB_INDICES)
    assert [f.tobytes() == e for f, e in zip(alone, expected, strict=True)] == [True] * len(
        BBB_INDICES)
    assert all(np.array_equal(a, b) for a, b in zip(alone, together, strict=True))
    assert reader.in_process is in_process and reader.cli_fallback_frames == 0


def test_bbb_in_process_frames_are_the_cli_frames_at_full_size(bbb: Path) -> None:
    """Unscaled, both libav builds convert to RGB identically, so the in-process path's
    frames must equal the ffmpeg CLI's sequential decode byte for byte (scaled, their
    swscale versions round differently by a few levels)."""
    probe = probe_video(bbb)
    reader = FrameReader(bbb, probe)
    indices = [0, 95, 96, 97, 1000, 1001, 2399]
    expected = decode_sequentially(bbb, indices, (probe.width, probe.height))
    frames = reader.read(indices, probe.width)
    assert [f.tobytes() == e for f, e in zip(frames, expected, strict=True)] == [True] * len(
        indices)
    decoder = reader._decoder
    assert decoder is not None and decoder.counts.packets_skipped > 0


def test_bbb_reads_its_last_frame(bbb: Path) -> None:
    probe = probe_video(bbb)
    frames = FrameReader(bbb, probe).read([probe.num_frames - 1, 0], 64)
    assert [f.shape for f in frames] == [(36, 64, 3)] * 2


def test_narrated_probe_and_transcript(narrated: Path) -> None:
    probe = probe_video(narrated)
    assert (probe.width, probe.height, probe.num_frames) == (480, 352, 5402)
    assert probe.has_audio and probe.subtitle_streams == ()
    lines = transcribe(narrated, timeout_s=240)
    assert len(lines) >= 10
    assert all(0 <= ln.start <= ln.end <= probe.duration_s + 1 for ln in lines)
    assert [ln.start for ln in lines] == sorted(ln.start for ln in lines)
    text = " ".join(ln.text for ln in lines).lower()
    assert "creativity" in text and "share" in text


def test_transcribing_a_video_without_audio_is_a_typed_error(tmp_path: Path, bbb: Path
                                                             ) -> None:
    silent = tmp_path / "silent.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-t", "2", "-i", str(bbb), "-an",
                    "-c:v", "copy", str(silent)], check=True, timeout=60)
    with pytest.raises(MediaError) as error:
        transcribe(silent)
    assert error.value.code == "no_audio"
