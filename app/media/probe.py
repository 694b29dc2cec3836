"""Probing an uploaded video with ffprobe: what it is, how long, how many frames, how big.

The tree (``app.core.tree``) is built from ``num_frames`` and the average ``fps``; every
bad upload is refused here with a typed ``MediaError`` before anything decodes it.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

from app.media.ffmpeg import (
    MediaError,
    check_local_file,
    explain_open_failure,
    find_ffprobe,
    input_args,
    media_error,
    run_tool,
)

FrameCountMethod = Literal["nb_frames", "counted", "estimated"]

DEFAULT_MAX_DURATION_S = 6 * 3600.0
DEFAULT_MAX_PIXELS = 8192 * 8192
DEFAULT_TIMEOUT_S = 30.0
PROBE_OUTPUT_LIMIT = 4 * 1024 * 1024
# Codecs ffprobe names but that carry no decodable picture.
_NO_PICTURE_CODECS = frozenset({"", "none", "unknown"})


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """An audio or subtitle stream of the container (``index`` is ffmpeg's stream index)."""

    index: int
    codec: str
    language: str | None


@dataclass(frozen=True, slots=True)
class VideoProbe:
    """What vidnav needs to know about a video before building its tree."""

    path: str
    container: str
    duration_s: float
    num_frames: int
    frame_count_method: FrameCountMethod
    fps: float  # average: num_frames / duration where both are known
    width: int  # displayed, after rotation
    height: int
    rotation: int  # degrees counter-clockwise from the display matrix, 0/90/180/270
    codec: str
    has_audio: bool
    audio_streams: tuple[StreamInfo, ...]
    subtitle_streams: tuple[StreamInfo, ...]
    video_stream_index: int
    start_time_s: float  # the container's start time; seeks are relative to it
    video_start_time_s: float  # the first video timestamp
    variable_frame_rate: bool
    size_bytes: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored on the ``videos`` row, returned by the API)."""
        data = asdict(self)
        data["audio_streams"] = [asdict(s) for s in self.audio_streams]
        data["subtitle_streams"] = [asdict(s) for s in self.subtitle_streams]
        return data


def probe_video(
    path: str | os.PathLike[str], *, max_duration_s: float = DEFAULT_MAX_DURATION_S,
    max_pixels: int = DEFAULT_MAX_PIXELS, timeout_s: float = DEFAULT_TIMEOUT_S,
) -> VideoProbe:
    """Probe ``path`` and check it is a video vidnav can navigate.

    Raises ``MediaError`` with code ``not_media``, ``no_video_stream``,
    ``unknown_duration``, ``dimensions_too_large``, ``video_too_long``,
    ``unreadable_codec``, ``unsafe_input``, ``media_timeout`` or ``ffmpeg_missing``.
    """
    file = check_local_file(path)
    info = _ffprobe_json(file, timeout_s)
    fmt = info.get("format") or {}
    streams = info.get("streams") or []
    container = str(fmt.get("format_name") or "")

    video = _main_video_stream(streams)
    if video is None:
        raise media_error("no_video_stream", "the file has no video stream",
                          container=container)
    codec, width, height, rotation = _picture(video, max_pixels)
    duration = _checked_duration(video, fmt, container, max_duration_s)

    avg_rate = _rate(video.get("avg_frame_rate"))
    real_rate = _rate(video.get("r_frame_rate"))
    num_frames, method, irregular = _frame_count(file, video, duration, avg_rate or real_rate,
                                                 timeout_s)
    if num_frames <= 0:
        raise media_error("unknown_duration", "the video has no frames", container=container)
    fps = num_frames / duration
    if avg_rate and abs(avg_rate - fps) / avg_rate < 0.002:
        fps = avg_rate  # keep the exact container rate (e.g. 24.0) when they agree
    # A VFR stream's average rate differs from its base rate (containers disagree on which
    # they report), or its counted timestamps are irregular; frame times must then be read.
    vfr = irregular or any(
        r is not None and abs(r - fps) / r > 0.01 for r in (real_rate, avg_rate)
    )

    audio = tuple(_stream_info(s) for s in streams if s.get("codec_type") == "audio")
    subs = tuple(_stream_info(s) for s in streams if s.get("codec_type") == "subtitle")
    start = _as_float(fmt.get("start_time")) or 0.0
    video_start = _as_float(video.get("start_time"))
    return VideoProbe(
        path=str(file), container=container, duration_s=round(duration, 6),
        num_frames=num_frames, frame_count_method=method, fps=fps, width=width, height=height,
        rotation=rotation, codec=codec, has_audio=bool(audio), audio_streams=audio,
        subtitle_streams=subs, video_stream_index=int(video.get("index", 0)),
        start_time_s=start, video_start_time_s=start if video_start is None else video_start,
        variable_frame_rate=vfr, size_bytes=file.stat().st_size,
    )


def _picture(video: dict[str, Any], max_pixels: int) -> tuple[str, int, int, int]:
    """The video stream's codec, displayed width and height, and rotation; refuses a stream
    with no decodable picture or more than ``max_pixels`` pixels."""
    codec = str(video.get("codec_name") or "")
    coded_w = _as_int(video.get("width"))
    coded_h = _as_int(video.get("height"))
    if codec in _NO_PICTURE_CODECS or not coded_w or not coded_h:
        tag = video.get("codec_tag_string") or "unknown"
        raise media_error("unreadable_codec", f"the video codec ({tag}) cannot be decoded",
                          kind="unsupported", codec_tag=str(tag))
    if coded_w * coded_h > max_pixels:
        raise media_error(
            "dimensions_too_large",
            f"the video is {coded_w}x{coded_h} pixels; at most {max_pixels} pixels are accepted",
            kind="too_large", width=coded_w, height=coded_h, max_pixels=max_pixels,
        )
    rotation = _rotation(video)
    width, height = (coded_h, coded_w) if rotation in (90, 270) else (coded_w, coded_h)
    return codec, width, height, rotation


def _checked_duration(video: dict[str, Any], fmt: dict[str, Any], container: str,
                      max_duration_s: float) -> float:
    """The video's duration in seconds; refuses an unknown one or one over the limit."""
    duration = _duration(video, fmt)
    if duration is None or duration <= 0:
        raise media_error("unknown_duration", "the video's duration is zero or unknown",
                          container=container)
    if duration > max_duration_s:
        raise media_error(
            "video_too_long",
            f"the video lasts {duration:.0f} s; at most {max_duration_s:.0f} s are accepted",
            kind="too_large", duration_s=duration, max_duration_s=max_duration_s,
        )
    return duration


def check_complete(probe: VideoProbe, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """Refuse a file whose index promises frames its data does not hold (``truncated``).

    An MP4 written with its index first (faststart) and cut off, as an interrupted copy
    leaves it, still probes as the whole video. Reading the packets from the last keyframe
    before the end tells: ffprobe reads none (the keyframe is gone) or reports a
    ``partial file``. Containers whose frames were counted packet by packet
    (``frame_count_method`` not ``nb_frames``) are only as long as their data, so they
    pass as they are; so does a file this check cannot finish in time (a stream with few
    keyframes is read from its last one).
    """
    if probe.frame_count_method != "nb_frames":
        return
    file = Path(probe.path)
    # The last second (the last 1 % of a short video): only its GOP is read.
    near_end = probe.video_start_time_s + max(probe.duration_s * 0.99, probe.duration_s - 1.0)
    args = [str(find_ffprobe()), "-v", "error", "-hide_banner", *input_args(file),
            "-read_intervals", f"{near_end:.6f}%",
            "-select_streams", str(probe.video_stream_index),
            "-show_entries", "packet=pos", "-of", "csv=p=0"]
    try:
        result = run_tool(args, timeout_s=timeout_s, max_stdout=PROBE_OUTPUT_LIMIT,
                          what="checking the end of the video")
    except MediaError as exc:
        if exc.code in ("media_timeout", "unsafe_input"):  # too long to tell: let it be
            return
        raise
    if result.returncode == 0 and (not result.stdout.strip() or "partial file" in result.stderr):
        raise media_error(
            "truncated", f"the file is truncated: its index promises {probe.num_frames} "
            f"frames over {probe.duration_s:.1f} s, but the data ends before the last of them",
            num_frames=probe.num_frames, duration_s=probe.duration_s,
        )


def _ffprobe_json(file: Path, timeout_s: float) -> dict[str, Any]:
    args = [str(find_ffprobe()), "-v", "error", "-hide_banner", *input_args(file),
            "-show_format", "-show_streams", "-of", "json"]
    result = run_tool(args, timeout_s=timeout_s, max_stdout=PROBE_OUTPUT_LIMIT,
                      what="probing the video")
    if result.returncode != 0:
        raise explain_open_failure(result.stderr, file)
    try:
        data = json.loads(result.stdout.decode("utf-8", "replace") or "{}")
    except json.JSONDecodeError:
        raise media_error("not_media", "ffprobe returned unreadable output") from None
    if not isinstance(data, dict) or not (data.get("format") or data.get("streams")):
        raise media_error("not_media", "the file is not a readable video")
    return data


def _main_video_stream(streams: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The first real video stream; cover art (attached pictures) does not count."""
    for stream in streams:
        if stream.get("codec_type") != "video":
            continue
        if (stream.get("disposition") or {}).get("attached_pic"):
            continue
        return stream
    return None


def _rotation(video: dict[str, Any]) -> int:
    raw: float | None = None
    for side in video.get("side_data_list") or []:
        if "rotation" in side:
            raw = _as_float(side.get("rotation"))
            break
    if raw is None:
        raw = _as_float((video.get("tags") or {}).get("rotate"))
    if raw is None or not math.isfinite(raw):
        return 0
    return int(round(raw / 90.0) * 90) % 360


def _duration(video: dict[str, Any], fmt: dict[str, Any]) -> float | None:
    for value in (video.get("duration"), fmt.get("duration")):
        seconds = _as_float(value)
        if seconds is not None and math.isfinite(seconds) and seconds > 0:
            return seconds
    return None


def _frame_count(file: Path, video: dict[str, Any], duration: float, rate: float | None,
                 timeout_s: float) -> tuple[int, FrameCountMethod, bool]:
    """The frame count, how it was found, and whether counted timestamps are irregular."""
    declared = _as_int(video.get("nb_frames"))
    if declared and declared > 0:
        return declared, "nb_frames", False
    stamps = _packet_times(file, int(video.get("index", 0)), timeout_s)
    if stamps:
        return len(stamps), "counted", _irregular(stamps)
    if rate:
        return max(1, round(duration * rate)), "estimated", False
    raise media_error("unknown_duration", "the video's frame rate and frame count are unknown")


def _packet_times(file: Path, stream_index: int, timeout_s: float) -> list[float]:
    """Presentation times of every packet (read, not decoded), for containers that do not
    store a frame count; their spacing also reveals a variable frame rate."""
    args = [str(find_ffprobe()), "-v", "error", "-hide_banner", *input_args(file),
            "-select_streams", str(stream_index), "-show_entries", "packet=pts_time",
            "-of", "csv=p=0"]
    try:
        result = run_tool(args, timeout_s=timeout_s, max_stdout=64 * 1024 * 1024,
                          what="counting the video's frames")
    except MediaError as exc:
        if exc.code == "media_timeout":
            return []  # fall back to an estimate rather than refuse a long file
        raise
    if result.returncode != 0:
        return []
    return [value for token in result.stdout.decode("ascii", "replace").split()
            if (value := _as_float(token.strip(","))) is not None and math.isfinite(value)]


def _irregular(stamps: list[float]) -> bool:
    """True when frame durations vary by more than a quarter of a typical one."""
    if len(stamps) < 3:
        return False
    ordered = sorted(stamps)
    gaps = sorted(b - a for a, b in zip(ordered, ordered[1:], strict=False))
    typical = gaps[len(gaps) // 2]
    if typical <= 0:
        return True
    low, high = gaps[len(gaps) // 100], gaps[-1 - len(gaps) // 100]
    return high - low > 0.25 * typical


def _stream_info(stream: dict[str, Any]) -> StreamInfo:
    language = (stream.get("tags") or {}).get("language")
    return StreamInfo(index=int(stream.get("index", 0)), codec=str(stream.get("codec_name") or ""),
                      language=str(language) if language and language != "und" else None)


def _rate(value: object) -> float | None:
    if not isinstance(value, str) or "/" not in value:
        return None
    try:
        rate = Fraction(value)
    except (ValueError, ZeroDivisionError):
        return None
    return float(rate) if rate > 0 else None


def _as_float(value: object) -> float | None:
    if value is None or value == "N/A":
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _as_int(value: object) -> int | None:
    number = _as_float(value)
    return int(number) if number is not None and math.isfinite(number) else None
