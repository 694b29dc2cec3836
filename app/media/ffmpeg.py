"""Finding ffmpeg/ffprobe and running them safely on files uploaded by strangers.

Every run is bounded: a wall-clock timeout that kills the whole process group, a cap on
the bytes read from stdout, and only the tail of stderr kept. Inputs are opened with the
``file`` protocol alone and a whitelist of container demuxers, so playlists (HLS), concat
lists, image sequences and URLs inside a file are refused by ffmpeg itself.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import cast

from app.errors import ErrorKind, VidnavError

DEBIAN_FFMPEG = Path("/usr/bin/ffmpeg")
DEBIAN_FFPROBE = Path("/usr/bin/ffprobe")

# Demuxers of real video (and, for a clear "no video stream" error, audio) containers.
# Anything else, notably hls, dash, concat, image2, *_pipe image demuxers, tee, subfile,
# is refused by ffmpeg before it opens a second file.
SAFE_DEMUXERS: tuple[str, ...] = (
    "mov", "mp4", "m4a", "3gp", "3g2", "mj2", "matroska", "webm", "avi", "flv", "mpegts",
    "mpeg", "mpegvideo", "ogg", "asf", "mxf", "nut", "h264", "hevc", "m4v", "ivf", "dv",
    "yuv4mpegpipe", "wav", "mp3", "flac", "aac", "w64",
)
# Demuxers whose job is to open other files or URLs: named as unsafe rather than unsupported.
INDIRECT_DEMUXERS = frozenset({
    "hls", "applehttp", "dash", "concat", "image2", "image2pipe", "tee", "subfile", "data",
    "ffmetadata", "sdp", "rtsp", "rtp", "mpjpeg", "hds", "smoothstreaming", "imf",
})
INPUT_OPTIONS: tuple[str, ...] = (
    "-protocol_whitelist", "file",
    "-format_whitelist", ",".join(SAFE_DEMUXERS),
)
STDERR_TAIL_BYTES = 16 * 1024
INPUT_NAME = "input"  # how diagnostics name the input file (see ``run_tool``)
_URL_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
_NOT_ON_WHITELIST_RE = re.compile(r"\[([\w,]+) @ [^\]]*\] Format not on whitelist")


class MediaError(VidnavError):
    """A video (or subtitle file) that vidnav cannot or will not read."""

    code = "media_error"
    kind: ErrorKind = "invalid"


def media_error(code: str, message: str, *, kind: ErrorKind = "invalid", **details: object
                ) -> MediaError:
    """Build a ``MediaError`` with a stable code; ``details`` end up in the API error body."""
    return MediaError(message, code=code, kind=kind, details=dict(details))


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a finished ffmpeg/ffprobe run produced (stdout may be cut at the cap)."""

    returncode: int
    stdout: bytes
    stderr: str


@lru_cache(maxsize=1)
def find_ffmpeg() -> Path:
    """The ffmpeg binary: Debian's, then one on PATH, then imageio-ffmpeg's bundled build."""
    for candidate in (DEBIAN_FFMPEG, _which("ffmpeg"), _imageio_ffmpeg()):
        if candidate is not None and candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise media_error(
        "ffmpeg_missing",
        "ffmpeg was not found: install it (Debian/Ubuntu: `apt-get install ffmpeg`) or "
        "`pip install imageio-ffmpeg` for a bundled static build",
        kind="unavailable",
    )


@lru_cache(maxsize=1)
def find_ffprobe() -> Path:
    """The ffprobe binary: Debian's, then one on PATH, then one beside the ffmpeg found."""
    candidates: list[Path | None] = [DEBIAN_FFPROBE, _which("ffprobe")]
    with contextlib.suppress(MediaError):
        candidates.append(find_ffmpeg().with_name("ffprobe"))
    for candidate in candidates:
        if candidate is not None and candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise media_error(
        "ffmpeg_missing",
        "ffprobe was not found: install ffmpeg (Debian/Ubuntu: `apt-get install ffmpeg`, "
        "macOS: `brew install ffmpeg`); it ships ffprobe",
        kind="unavailable",
    )


def _which(name: str) -> Path | None:
    found = shutil.which(name)
    return Path(found) if found else None


def _imageio_ffmpeg() -> Path | None:
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    try:
        return Path(imageio_ffmpeg.get_ffmpeg_exe())
    except RuntimeError:
        return None


def check_local_file(path: str | os.PathLike[str]) -> Path:
    """Accept only an existing, non-empty regular local file; refuse URLs, devices, FIFOs."""
    text = os.fspath(path)
    if not text or "\x00" in text:
        raise media_error("unsafe_input", "the video path is empty or malformed")
    if _URL_RE.match(text) and not Path(text).exists():
        raise media_error("unsafe_input", "only local files are read, not URLs",
                          path=text[:200])
    resolved = Path(text).resolve()
    # Details name the file, never its folder: the API shows them to whoever uploaded it.
    try:
        st = resolved.stat()
    except FileNotFoundError:
        raise media_error("not_media", "the video file does not exist",
                          path=resolved.name) from None
    except OSError as exc:
        raise media_error("not_media", f"the video file cannot be read: {exc.strerror}",
                          path=resolved.name) from None
    if not stat.S_ISREG(st.st_mode):
        raise media_error("unsafe_input", "the video is not a regular file",
                          path=resolved.name)
    if st.st_size == 0:
        raise media_error("not_media", "the video file is empty", path=resolved.name)
    return resolved


def input_args(path: Path, *, seek_s: float | None = None) -> list[str]:
    """The restricted input options plus ``-i file:PATH`` (``file:`` so no other protocol
    can be smuggled in through the name)."""
    args = list(INPUT_OPTIONS)
    if seek_s is not None and seek_s > 0:
        args += ["-ss", f"{seek_s:.6f}"]
    return [*args, "-i", f"file:{path}"]


def explain_open_failure(stderr: str, path: Path) -> MediaError:
    """Turn ffmpeg's complaint about an input it could not open into a typed error."""
    match = _NOT_ON_WHITELIST_RE.search(stderr)
    if match:
        names = set(match.group(1).split(","))
        if names & INDIRECT_DEMUXERS:
            return media_error(
                "unsafe_input",
                f"the file is a playlist or reference list ({match.group(1)}), which would "
                "make ffmpeg open other files; upload the video itself",
                demuxer=match.group(1),
            )
        if any(n.endswith("_pipe") for n in names):
            return media_error("not_media", f"the file is a still image ({match.group(1)}), "
                               "not a video", demuxer=match.group(1))
        return media_error("not_media", f"unsupported container format {match.group(1)!r}",
                           demuxer=match.group(1))
    if "Picture size" in stderr and "is invalid" in stderr:
        return media_error("dimensions_too_large",
                           "the video claims a picture size ffmpeg refuses", kind="too_large")
    last = _last_line(stderr)
    return media_error("not_media", f"the file is not a readable video: {last}",
                       path=path.name)


def _last_line(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    return lines[-1].removeprefix(f"{INPUT_NAME}: ")[:300] if lines else \
        "no diagnostic from ffmpeg"


def _hide_inputs(stderr: str, args: Sequence[str]) -> str:
    """ffmpeg's diagnostics with each input file's location replaced by ``INPUT_NAME``:
    they end up in error messages, and a user must not learn where the server keeps files."""
    for arg in args:
        if arg.startswith("file:") and len(arg) > len("file:"):
            stderr = stderr.replace(arg, INPUT_NAME).replace(arg[len("file:"):], INPUT_NAME)
    return stderr


def run_tool(args: Sequence[str], *, timeout_s: float, max_stdout: int, what: str
             ) -> ToolResult:
    """Run one ffmpeg/ffprobe command with a timeout and bounded output.

    The child gets its own process group so a timeout kills it and anything it spawned;
    stdout beyond ``max_stdout`` bytes kills it too (a hostile file must not fill memory).
    The stderr returned names input files ``INPUT_NAME``, not by their location.
    """
    proc = subprocess.Popen(
        list(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True, close_fds=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    out = bytearray()
    err = bytearray()
    overflow = threading.Event()

    def read_stdout() -> None:
        stream = cast(io.BufferedReader, proc.stdout)
        while chunk := stream.read1(1 << 20):
            if len(out) + len(chunk) > max_stdout:
                out.extend(chunk[: max_stdout - len(out)])
                overflow.set()
                _kill_group(proc)
                break
            out.extend(chunk)

    def read_stderr() -> None:
        stream = cast(io.BufferedReader, proc.stderr)
        while chunk := stream.read1(1 << 16):
            err.extend(chunk)
            if len(err) > 2 * STDERR_TAIL_BYTES:
                del err[: len(err) - STDERR_TAIL_BYTES]

    readers = [threading.Thread(target=read_stdout, daemon=True),
               threading.Thread(target=read_stderr, daemon=True)]
    for thread in readers:
        thread.start()
    try:
        returncode = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.wait()
        raise media_error(
            "media_timeout", f"{what} took longer than {timeout_s:g} s and was stopped",
            kind="invalid", timeout_s=timeout_s,
        ) from None
    except BaseException:
        _kill_group(proc)
        proc.wait()
        raise
    finally:
        for thread in readers:
            thread.join(timeout=5)
        proc.stdout.close()
        proc.stderr.close()
    stderr = _hide_inputs(bytes(err[-STDERR_TAIL_BYTES:]).decode("utf-8", "replace"), args)
    if overflow.is_set():
        raise media_error("unsafe_input", f"{what} produced more output than expected "
                          f"({max_stdout} bytes); the file is inconsistent", limit=max_stdout)
    return ToolResult(returncode=returncode, stdout=bytes(out), stderr=stderr)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def scratch_dir(prefix: str = "vidnav-media-") -> Iterator[Path]:
    """A private temporary directory removed on every exit path, errors included."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
