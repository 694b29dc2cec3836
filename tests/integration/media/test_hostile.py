"""Uploads from strangers: every hostile file is refused with a clear, typed error."""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from app.media import ffmpeg as ffmpeg_mod
from app.media.ffmpeg import MediaError, find_ffprobe, input_args, run_tool, scratch_dir
from app.media.frames import FrameReader
from app.media.probe import probe_video
from tests.integration.media.videogen import ffmpeg_lavfi, read_index


def refused(path: Path | str) -> MediaError:
    with pytest.raises(MediaError) as error:
        probe_video(path)
    return error.value


@pytest.mark.parametrize("name", ["list.m3u8", "playlist.mp4"])
def test_hls_playlist_referencing_a_local_file(tmp_path: Path, cfr_mp4: Path, name: str
                                               ) -> None:
    playlist = tmp_path / name
    playlist.write_text(
        "#EXTM3U\n#EXT-X-TARGETDURATION:12\n#EXTINF:12.0,\n"
        f"file:{cfr_mp4}\n#EXTINF:1.0,\n/etc/passwd\n#EXT-X-ENDLIST\n")
    error = refused(playlist)
    assert error.code == "unsafe_input" and "playlist" in error.message


def test_concat_list(tmp_path: Path, cfr_mp4: Path) -> None:
    listing = tmp_path / "list.mp4"
    listing.write_text(f"ffconcat version 1.0\nfile '{cfr_mp4}'\nfile '/etc/hostname'\n")
    assert refused(listing).code == "unsafe_input"


def test_image_sequence_pattern_and_renamed_png(tmp_path: Path) -> None:
    png = ffmpeg_lavfi(tmp_path / "img001.png", "-f", "lavfi", "-i",
                       "testsrc2=s=64x48:d=0.04", "-frames:v", "1")
    renamed = tmp_path / "holiday.mp4"
    shutil.copyfile(png, renamed)
    error = refused(renamed)
    assert error.code == "not_media" and "image" in error.message
    # A printf pattern names no existing file; it must not open img001.png.
    assert refused(tmp_path / "img%03d.png").code == "not_media"


def test_zero_byte_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.touch()
    assert refused(empty).code == "not_media"


def test_truncated_mp4(tmp_path: Path, cfr_mp4: Path) -> None:
    data = cfr_mp4.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # ffmpeg writes the index (moov) at the end
    assert refused(cut).code == "not_media"


def test_truncated_faststart_mp4_reads_what_exists(tmp_path: Path, cfr_mp4: Path) -> None:
    fast = ffmpeg_lavfi(tmp_path / "fast.mp4", "-i", str(cfr_mp4), "-c", "copy",
                        "-movflags", "+faststart")
    data = fast.read_bytes()
    cut = tmp_path / "fastcut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    probe = probe_video(cut)  # the index survives and still promises 300 frames
    assert probe.num_frames == 300
    reader = FrameReader(cut, probe)
    assert read_index(reader.read([10], 64)[0]) == 10
    for request in ([0, 299], [40, 120, 299]):  # alone, and batched with frames that exist
        with pytest.raises(MediaError) as error:
            reader.read(request, 64)
        assert error.value.code == "frame_unavailable" and "truncated" in error.value.message


def test_claimed_100000_pixel_square(tmp_path: Path) -> None:
    huge = tmp_path / "huge.mp4"
    huge.write_bytes(b"YUV4MPEG2 W100000 H100000 F25:1 Ip A1:1 C420jpeg\nFRAME\n"
                     + os.urandom(4096))
    error = refused(huge)
    assert (error.code, error.kind) == ("dimensions_too_large", "too_large")


def test_claimed_size_over_the_pixel_limit(tmp_path: Path) -> None:
    big = tmp_path / "big.y4m"
    big.write_bytes(b"YUV4MPEG2 W10000 H10000 F25:1 Ip A1:1 C420jpeg\nFRAME\n"
                    + os.urandom(4096))
    error = refused(big)
    assert error.code == "dimensions_too_large" and error.details["width"] == 10000


def test_unknown_codec(tmp_path: Path) -> None:
    avi = ffmpeg_lavfi(tmp_path / "ok.avi", "-f", "lavfi", "-i",
                       "testsrc2=s=64x48:r=10:d=1", "-c:v", "mjpeg")
    strange = tmp_path / "strange.avi"
    strange.write_bytes(avi.read_bytes().replace(b"MJPG", b"ZQZQ"))
    error = refused(strange)
    assert (error.code, error.kind) == ("unreadable_codec", "unsupported")


def test_garbage_bytes(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(os.urandom(200_000))
    assert refused(junk).code == "not_media"


def test_urls_devices_and_missing_files(tmp_path: Path) -> None:
    assert refused("http://127.0.0.1:1/video.mp4").code == "unsafe_input"
    assert refused("file:///etc/passwd").code == "unsafe_input"
    assert refused("/dev/zero").code == "unsafe_input"
    assert refused(tmp_path).code == "unsafe_input"
    assert refused(tmp_path / "missing.mp4").code == "not_media"


def test_fifo_is_refused_before_ffmpeg_opens_it(tmp_path: Path) -> None:
    fifo = tmp_path / "never.mp4"
    os.mkfifo(fifo)
    assert refused(fifo).code == "unsafe_input"


def test_a_file_that_never_ends_is_killed_by_the_timeout(tmp_path: Path, mpegts: Path
                                                         ) -> None:
    """A FIFO fed forever is what an endless input looks like to ffmpeg: it must be
    killed at the deadline with its whole process group, leaving nothing running."""
    fifo = tmp_path / "endless.ts"
    os.mkfifo(fifo)
    stop = threading.Event()
    clip = mpegts.read_bytes()

    def feed() -> None:
        try:
            fd = os.open(fifo, os.O_WRONLY)  # blocks until ffprobe opens the other end
        except OSError:
            return
        try:
            while not stop.is_set():
                os.write(fd, clip)  # a valid stream, forever
        except OSError:
            pass  # ffprobe was killed: the pipe broke
        finally:
            os.close(fd)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    started = time.monotonic()
    args = [str(find_ffprobe()), "-v", "error", *input_args(fifo), "-count_packets",
            "-show_entries", "stream=nb_read_packets", "-probesize", "100M",
            "-analyzeduration", "1000M"]
    try:
        with pytest.raises(MediaError) as error:
            run_tool(args, timeout_s=1.5, max_stdout=1 << 20, what="probing the video")
    finally:
        stop.set()
        # Release a feeder still waiting in open() so the thread ends with the test.
        unblock = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        feeder.join(timeout=5)
        os.close(unblock)
    assert error.value.code == "media_timeout"
    assert time.monotonic() - started < 8
    leftover = {p.pid for p in psutil.Process().children(recursive=True)} - before
    assert leftover == set()


def test_output_beyond_the_cap_kills_the_tool() -> None:
    with pytest.raises(MediaError) as error:
        run_tool([sys.executable, "-c", "import sys; sys.stdout.write('x' * 10**6)"],
                 timeout_s=20, max_stdout=1000, what="a chatty tool")
    assert error.value.code == "unsafe_input"


def test_missing_ffmpeg_names_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(ffmpeg_mod, "DEBIAN_FFMPEG", tmp_path / "no-ffmpeg")
    monkeypatch.setattr(ffmpeg_mod, "DEBIAN_FFPROBE", tmp_path / "no-ffprobe")
    monkeypatch.setenv("PATH", str(tmp_path))
    ffmpeg_mod.find_ffmpeg.cache_clear()
    ffmpeg_mod.find_ffprobe.cache_clear()
    try:
        with pytest.raises(MediaError) as error:
            ffmpeg_mod.find_ffprobe()
        assert (error.value.code, error.value.kind) == ("ffmpeg_missing", "unavailable")
        assert "apt-get install ffmpeg" in error.value.message
    finally:
        ffmpeg_mod.find_ffmpeg.cache_clear()
        ffmpeg_mod.find_ffprobe.cache_clear()


def test_scratch_directories_are_removed_on_errors_too() -> None:
    with pytest.raises(RuntimeError), scratch_dir() as scratch:
        (scratch / "part.bin").write_bytes(b"x" * 1024)
        kept = scratch
        raise RuntimeError("decoding failed half-way")
    assert not kept.exists()
    with scratch_dir() as scratch:
        (scratch / "ok.bin").write_bytes(b"x")
    assert not scratch.exists()
