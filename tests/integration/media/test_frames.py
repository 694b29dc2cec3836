"""FrameReader on generated videos whose frames show their own index."""

from __future__ import annotations

import base64
import io
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from PIL import Image

from app.media.ffmpeg import MediaError
from app.media.frames import FrameReader
from app.media.probe import probe_video
from app.models.images import InvalidImage, to_jpeg_data_uri
from tests.integration.media.videogen import read_index


def reader_for(path: Path, **kwargs: object) -> FrameReader:
    return FrameReader(path, probe_video(path), **kwargs)  # type: ignore[arg-type]


# Containers the in-process (PyAV) path reads; MPEG-TS and AVI always go to the ffmpeg CLI.
IN_PROCESS_FIXTURES = {"cfr_mp4", "vfr_mkv", "vfr_mp4", "offset_mp4", "webm", "odd_mp4"}
PATHS = pytest.mark.parametrize("in_process", [True, False], ids=["in-process", "ffmpeg-cli"])


def assert_path_used(reader: FrameReader, fixture: str, in_process: bool) -> None:
    """The reader took the path the test meant, and the in-process one handed nothing back."""
    assert reader.in_process is (in_process and fixture in IN_PROCESS_FIXTURES)
    assert reader.cli_fallback_frames == 0


@PATHS
@pytest.mark.parametrize("fixture", [
    "cfr_mp4", "vfr_mkv", "vfr_mp4", "mpegts", "offset_mp4", "webm", "avi", "odd_mp4",
])
def test_frames_read_alone_are_the_frames_asked_for(
    fixture: str, in_process: bool, request: pytest.FixtureRequest,
) -> None:
    path: Path = request.getfixturevalue(fixture)
    reader = reader_for(path, in_process=in_process)
    count = reader.probe.num_frames
    # Each index alone: every position in the first keyframe intervals, both sides of the
    # VFR jumps at 30 and 60, then a stride to the last frame.
    indices = sorted({*range(min(count, 32)), *range(32, count, 9), 59, 60, 61, count - 1}
                     & set(range(count)))
    wrong = [(i, got) for i in indices if (got := read_index(reader.read([i], 48)[0])) != i]
    assert wrong == []
    assert_path_used(reader, fixture, in_process)


@PATHS
@pytest.mark.parametrize("fixture", ["cfr_mp4", "vfr_mkv", "mpegts", "webm"])
def test_batched_reads_keep_order_and_duplicates(
    fixture: str, in_process: bool, request: pytest.FixtureRequest,
) -> None:
    path: Path = request.getfixturevalue(fixture)
    reader = reader_for(path, in_process=in_process)
    count = reader.probe.num_frames
    indices = [count - 1, 0, 7, 7, count // 2, 3, count - 1, 1]
    assert [read_index(f) for f in reader.read(indices, 64)] == indices
    # Every other frame: a long select expression in one decoding pass.
    every_other = list(range(0, count, 2))
    assert [read_index(f) for f in reader.read(every_other, 32)] == every_other
    assert_path_used(reader, fixture, in_process)


@pytest.mark.parametrize("fixture", sorted(IN_PROCESS_FIXTURES | {"rotated_mp4"}))
def test_in_process_frames_equal_the_cli_frames_pixel_for_pixel(
    fixture: str, request: pytest.FixtureRequest,
) -> None:
    """Full size (no scaling, where the two swscale builds could round differently), the
    in-process path returns the very bytes the ffmpeg CLI path does, every frame."""
    path: Path = request.getfixturevalue(fixture)
    fast = reader_for(path)
    cli = reader_for(path, in_process=False)
    indices = list(range(fast.probe.num_frames))
    side = max(fast.probe.width, fast.probe.height)
    ours, theirs = fast.read(indices, side), cli.read(indices, side)
    assert [i for i, (a, b) in enumerate(zip(ours, theirs, strict=True))
            if not np.array_equal(a, b)] == []
    assert fast.in_process and fast.cli_fallback_frames == 0


def test_in_process_path_skips_unreferenced_packets_and_restarts_at_keyframes(
    cfr_mp4: Path,
) -> None:
    """Frames 20 apart over keyframes 25 apart: B-frames no one predicts from are not
    decoded, nor the references before a keyframe past the last wanted frame. Cut at
    those keyframes into passes that run side by side, the same packets are decoded."""
    indices = list(range(3, 300, 20))
    one_pass = reader_for(cfr_mp4, workers=1)
    frames = one_pass.read(indices, 64)
    assert [read_index(f) for f in frames] == indices
    decoder = one_pass._decoder
    assert decoder is not None and one_pass.cli_fallback_frames == 0
    single = decoder.counts
    assert single.passes == 1 and single.restarts > 0 and single.packets_skipped > 0
    assert single.packets_decoded + single.packets_skipped <= 300

    parallel = reader_for(cfr_mp4, workers=2)
    assert all(np.array_equal(a, b) for a, b in zip(parallel.read(indices, 64), frames,
                                                    strict=True))
    decoder = parallel._decoder
    assert decoder is not None and parallel.cli_fallback_frames == 0
    assert decoder.counts.passes > 2 and decoder.counts.restarts == 0
    assert decoder.counts.packets_decoded == single.packets_decoded


OPEN_GOP_CODECS = {
    "h264": ("-c:v", "libx264", "-preset", "medium", "-bf", "4", "-x264opts",
             "b-pyramid=normal:open-gop=1:keyint=30:min-keyint=30:scenecut=0",
             "-pix_fmt", "yuv420p"),
    "hevc": ("-c:v", "libx265", "-preset", "fast", "-tag:v", "hvc1", "-x265-params",
             "keyint=30:min-keyint=30:scenecut=0:bframes=4:open-gop=1:log-level=error"),
}


@pytest.mark.parametrize("codec", sorted(OPEN_GOP_CODECS))
def test_open_gop_leading_frames_match_decoding_from_the_start(
    codec: str, media_dir: Path,
) -> None:
    """Open GOPs: frames shown before a keyframe but coded after it predict from the
    previous GOP. A pass whose seek lands on that keyframe must go back further; every
    frame, read alone, equals decoding the whole file from its first frame."""
    import av

    from tests.integration.media.videogen import make_indexed_video

    path = make_indexed_video(media_dir / f"open_gop_{codec}.mp4", num_frames=120,
                              codec=OPEN_GOP_CODECS[codec])
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        expected = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    reader = reader_for(path)
    side = max(reader.probe.width, reader.probe.height)
    wrong = [i for i in range(reader.probe.num_frames)
             if not np.array_equal(reader.read([i], side)[0], expected[i])]
    assert wrong == [] and reader.in_process and reader.cli_fallback_frames == 0


def test_timestamps_off_the_frame_grid_fall_back_to_the_cli(media_dir: Path) -> None:
    """A camera that dropped one frame: a 1-frame gap at frame 50 keeps the file
    constant-rate to the probe (average 24.75 fps against 25), but frames around the gap lie
    half a frame off the average grid. The in-process path will not guess which index such
    a time names; the CLI, seeking and counting frames, decodes them."""
    from tests.integration.media.videogen import make_indexed_video

    path = make_indexed_video(media_dir / "dropped.mp4", num_frames=100,
                              pts_expr="N+if(gte(N\\,50)\\,1\\,0)")
    reader = reader_for(path)
    assert not reader.probe.variable_frame_rate
    indices = [0, 1, 50, 99]  # three passes; only the one at frame 50 meets the late frame
    assert [read_index(f) for f in reader.read(indices, 48)] == indices
    assert reader.in_process and reader.cli_fallback_frames == 1


def test_in_process_path_refuses_what_the_probe_would(tmp_path: Path, cfr_mp4: Path) -> None:
    """Handed a playlist under a probe that claims MP4, libav is still kept to the file
    protocol and the container demuxers: the in-process decoder is refused, not opened."""
    from app.media.inprocess import InProcessDecoder, InProcessUnusable

    probe = probe_video(cfr_mp4)
    playlist = tmp_path / "list.mp4"
    playlist.write_text(f"#EXTM3U\n#EXTINF:12.0,\nfile:{cfr_mp4}\n#EXT-X-ENDLIST\n")
    with pytest.raises(InProcessUnusable):
        InProcessDecoder(playlist, probe, timeout_s=10)


def test_frames_are_rgb_scaled_by_ffmpeg_and_never_upscaled(cfr_mp4: Path) -> None:
    reader = reader_for(cfr_mp4)
    small = reader.read([10], 80)[0]
    assert small.shape == (60, 80, 3) and small.dtype == np.uint8
    full = reader.read([10], 4096)[0]
    assert full.shape == (120, 160, 3)
    # The top-left block is bit 0: frame 10 = 0b1010 has it off, bit 1 on.
    assert full[20, 20].max() < 60 and full[20, 60].min() > 200


def test_odd_sizes_scale_to_the_exact_rounded_size(odd_mp4: Path) -> None:
    reader = reader_for(odd_mp4)
    frame = reader.read([5], 64)[0]
    assert frame.shape == (39, 64, 3)  # 97 * 64 / 161 = 38.6
    assert read_index(frame) == 5


def test_rotated_video_comes_out_upright(rotated_mp4: Path) -> None:
    reader = reader_for(rotated_mp4)
    assert (reader.probe.width, reader.probe.height) == (120, 160)
    frames = reader.read([0, 37, 201], 80)
    assert frames[0].shape == (80, 60, 3)
    # ffmpeg applied the display matrix (90 degrees counter-clockwise); undo it to read.
    assert [read_index(np.rot90(f, k=-1)) for f in frames] == [0, 37, 201]


def test_read_many_matches_single_reads_and_mixes_sizes(cfr_mp4: Path) -> None:
    reader = reader_for(cfr_mp4)
    requests = [([0, 50, 100], 64), ([100, 150, 299], 64), ([25, 26], 32), ([], 64)]
    results = reader.read_many(requests)
    assert [[read_index(f) for f in frames] for frames in results] == [
        [0, 50, 100], [100, 150, 299], [25, 26], []]
    assert results[0][0].shape == (48, 64, 3) and results[2][0].shape == (24, 32, 3)
    alone = reader.read([150], 64)[0]
    assert np.array_equal(alone, results[1][1])


def test_far_apart_frames_are_fetched_by_separate_seeks(cfr_mp4: Path) -> None:
    reader = reader_for(cfr_mp4)
    size = (64, 48)
    plan = reader._plan([0, 1, 2, 280], size)
    # Close frames share one pass; a frame far away gets its own seek, not a decode-through.
    assert [seg.indices for seg in plan] == [(0, 1, 2), (280,)]
    assert plan[0].seek_s is None and plan[1].seek_s == pytest.approx(280 / 25 - 0.02)


def test_containers_without_a_keyframe_index_decode_from_the_start(mpegts: Path) -> None:
    reader = reader_for(mpegts)
    assert not reader.seekable
    assert all(seg.seek_s is None for seg in reader._plan([10, 100], (64, 48)))


def test_bad_requests_are_typed_errors(cfr_mp4: Path) -> None:
    reader = reader_for(cfr_mp4)
    with pytest.raises(MediaError) as out_of_range:
        reader.read([0, 300], 64)
    assert out_of_range.value.code == "frame_out_of_range"
    with pytest.raises(MediaError) as negative:
        reader.read([-1], 64)
    assert negative.value.code == "frame_out_of_range"
    with pytest.raises(MediaError) as not_int:
        reader.read([1.5], 64)  # type: ignore[list-item]
    assert not_int.value.code == "invalid_frame_request"
    with pytest.raises(MediaError) as bad_side:
        reader.read([1], 0)
    assert bad_side.value.code == "invalid_frame_request"


@PATHS
def test_slow_decoding_is_stopped_by_the_timeout(media_dir: Path, in_process: bool) -> None:
    from tests.integration.media.videogen import ffmpeg_lavfi

    # Large frames coded without keyframes except the first: decoding frame 2990 of a
    # mkv must decode everything before it, about 2 s in process on an idle 2-core
    # machine, far beyond a 0.1 s budget (at 990 frames and 0.3 s, an idle machine
    # sometimes decoded in time).
    path = media_dir / "heavy-3000.mkv"
    if not path.exists():
        ffmpeg_lavfi(path, "-f", "lavfi", "-i", "testsrc2=s=1280x720:r=50:d=60",
                     "-c:v", "libx264", "-preset", "ultrafast", "-g", "100000", "-crf", "35")
    reader = reader_for(path, timeout_s=0.1, in_process=in_process)
    assert reader.in_process is in_process
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    started = time.monotonic()
    with pytest.raises(MediaError) as error:
        reader.read([2990], 1280)
    assert error.value.code == "media_timeout"
    assert time.monotonic() - started < 10
    leftover = {p.pid for p in psutil.Process().children(recursive=True)} - before
    assert leftover == set()


def test_jpeg_data_uri_round_trips(cfr_mp4: Path) -> None:
    frame = reader_for(cfr_mp4).read([123], 160)[0]
    uri = to_jpeg_data_uri(frame, 160)
    assert uri.startswith("data:image/jpeg;base64,")
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))
    assert decoded.shape == frame.shape
    assert read_index(decoded) == 123
    with pytest.raises(InvalidImage):
        to_jpeg_data_uri(np.zeros((4, 4, 4), dtype=np.uint8), 160)


@pytest.mark.parametrize("fixture", ["vfr_mkv", "vfr_mp4"])
def test_far_apart_frames_sharing_a_timestamp_are_counted_not_guessed(
    fixture: str, request: pytest.FixtureRequest,
) -> None:
    path: Path = request.getfixturevalue(fixture)
    reader = reader_for(path)
    stamps = [reader.frame_time(i) for i in (28, 29)]
    assert stamps[0] == stamps[1]  # the encoder gave frames 28 and 29 one timestamp
    plan = reader._plan([29, 80, 119], (48, 36))
    assert [seg.indices for seg in plan] == [(29,), (80,), (119,)]
    assert plan[0].first == 28
    assert [read_index(f) for f in reader.read([119, 29, 80], 48)] == [119, 29, 80]
