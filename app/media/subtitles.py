"""Subtitles: sidecar SRT/WebVTT files and embedded text streams, as timed lines.

The caption protocol puts "subtitle lines overlapping the frame's time" beside each
frame (``lines_at``) and a node's lines beside its frames (``lines_overlapping``).
"""

from __future__ import annotations

import heapq
import html
import os
import re
from collections.abc import Sequence
from pathlib import Path

from app.core.ports import SubtitleLine
from app.media.ffmpeg import (
    MediaError,
    check_local_file,
    find_ffmpeg,
    input_args,
    media_error,
    run_tool,
)
from app.media.probe import VideoProbe

SIDECAR_SUFFIXES = (".srt", ".vtt")
# Codecs ffmpeg can turn into SRT text; bitmap subtitles (PGS, DVD, DVB) carry no text.
TEXT_SUBTITLE_CODECS = frozenset({
    "subrip", "srt", "ass", "ssa", "webvtt", "mov_text", "text", "microdvd", "subviewer",
    "subviewer1", "sami", "realtext", "jacosub", "mpl2", "pjs", "vplayer", "stl", "eia_608",
})
# Bounds on one subtitle track, far above real ones (a six-hour film has some 10,000 short
# cues, rarely three on screen at once). Each cue showing at a frame is copied into that
# frame's label in every caption request, so a small file of long or piled-up cues could
# otherwise make each request megabytes long; and parsing is Python, about a second per
# 25,000 cues.
MAX_SUBTITLE_BYTES = 8 * 1024 * 1024
MAX_CUES = 30_000
MAX_CUE_CHARS = 1_000
MAX_CUES_AT_ONCE = 16
EXTRACT_TIMEOUT_S = 120.0

_TIME = r"(?:(\d{1,3}):)?(\d{1,2}):(\d{1,2})[,.](\d{1,3})"
_CUE_TIMING_RE = re.compile(rf"^\s*{_TIME}\s*-->\s*{_TIME}(?:\s+.*)?$")
_TAG_RE = re.compile(r"<[^>\n]*>")
_ASS_OVERRIDE_RE = re.compile(r"\{\\[^}]*\}")
_SPACE_RE = re.compile(r"[ \t]+")


def parse_srt(text: str) -> list[SubtitleLine]:
    """Parse SubRip text. Cue numbers are optional; ``,`` or ``.`` before milliseconds."""
    return _parse_cues(text, webvtt=False)


def parse_vtt(text: str) -> list[SubtitleLine]:
    """Parse WebVTT text (header, cue ids, settings, NOTE/STYLE/REGION blocks)."""
    body = _normalise(text)
    first = body.lstrip("\n").split("\n", 1)[0]
    if not first.startswith("WEBVTT"):
        raise media_error("bad_subtitles", "a WebVTT file must start with 'WEBVTT'")
    return _parse_cues(body, webvtt=True)


def parse_subtitles(data: bytes, name_or_format: str) -> list[SubtitleLine]:
    """Parse an uploaded subtitle file; the format comes from its name or is given
    (``"srt"``/``"vtt"``). Garbage raises ``MediaError`` code ``bad_subtitles``."""
    if len(data) > MAX_SUBTITLE_BYTES:
        raise media_error("bad_subtitles", f"the subtitle file is larger than "
                          f"{MAX_SUBTITLE_BYTES // (1024 * 1024)} MiB", kind="too_large")
    fmt = name_or_format.lower().rsplit(".", 1)[-1]
    if fmt == "webvtt":
        fmt = "vtt"
    if fmt not in ("srt", "vtt"):
        raise media_error("bad_subtitles", f"unsupported subtitle format {name_or_format!r}; "
                          "use SRT or WebVTT", kind="unsupported")
    text = _decode(data)
    return parse_vtt(text) if fmt == "vtt" else parse_srt(text)


def find_sidecar_subtitles(video_path: str | os.PathLike[str]) -> Path | None:
    """A subtitle file next to the video: ``name.srt``/``name.vtt``, else ``name.<lang>.srt``."""
    video = Path(video_path)
    for suffix in SIDECAR_SUFFIXES:
        exact = video.with_suffix(suffix)
        if exact.is_file():
            return exact
    for suffix in SIDECAR_SUFFIXES:
        tagged = sorted(video.parent.glob(f"{_glob_escape(video.stem)}.*{suffix}"))
        for candidate in tagged:
            if candidate.is_file():
                return candidate
    return None


def read_sidecar_subtitles(video_path: str | os.PathLike[str]) -> list[SubtitleLine]:
    """The sidecar subtitles of a video, or no lines when it has none."""
    sidecar = find_sidecar_subtitles(video_path)
    if sidecar is None:
        return []
    with sidecar.open("rb") as fh:
        data = fh.read(MAX_SUBTITLE_BYTES + 1)
    return parse_subtitles(data, sidecar.name)


def extract_embedded_subtitles(path: str | os.PathLike[str], probe: VideoProbe, *,
                               timeout_s: float = EXTRACT_TIMEOUT_S) -> list[SubtitleLine]:
    """Lines of the first embedded text subtitle stream that ffmpeg can read, timed from
    the first video frame like frame labels are; bitmap subtitle streams are skipped."""
    file = check_local_file(path)
    for stream in probe.subtitle_streams:
        if stream.codec not in TEXT_SUBTITLE_CODECS:
            continue
        args = [str(find_ffmpeg()), "-nostdin", "-hide_banner", "-loglevel", "error",
                "-copyts", *input_args(file), "-map", f"0:{stream.index}", "-vn", "-an", "-dn",
                "-c:s", "srt", "-f", "srt", "pipe:1"]
        result = run_tool(args, timeout_s=timeout_s, max_stdout=MAX_SUBTITLE_BYTES,
                          what="extracting embedded subtitles")
        if result.returncode != 0:
            continue
        try:
            lines = parse_srt(result.stdout.decode("utf-8", "replace"))
        except MediaError:
            continue
        if lines:
            # -copyts keeps the container clock; frame 0 of the video is time 0.
            shift = probe.video_start_time_s
            return [SubtitleLine(start=max(0.0, round(ln.start - shift, 3)),
                                 end=max(0.0, round(ln.end - shift, 3)), text=ln.text)
                    for ln in lines]
    return []


def lines_overlapping(lines: Sequence[SubtitleLine], start: float, end: float
                      ) -> list[SubtitleLine]:
    """Lines whose time span touches ``[start, end]`` (closed), sorted by start time."""
    return sorted((ln for ln in lines if ln.start <= end and ln.end >= start),
                  key=lambda ln: (ln.start, ln.end))


def lines_at(lines: Sequence[SubtitleLine], t: float) -> list[SubtitleLine]:
    """Lines on screen at time ``t``: the caption protocol's per-frame subtitles."""
    return lines_overlapping(lines, t, t)


# --- parsing internals -----------------------------------------------------------------


def _decode(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", "replace")
    if b"\x00" in data[:4096]:
        raise media_error("bad_subtitles", "the subtitle file is binary, not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Older SRT files are often Windows-1252; latin-1 is the lossless last resort.
        try:
            return data.decode("cp1252")
        except UnicodeDecodeError:
            return data.decode("latin-1")


def _normalise(text: str) -> str:
    return text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def _parse_cues(text: str, *, webvtt: bool) -> list[SubtitleLine]:
    body = _normalise(text)
    if "\x00" in body:
        raise media_error("bad_subtitles", "the subtitle text contains NUL bytes")
    blocks = [b for b in re.split(r"\n[ \t]*\n", body) if b.strip()]
    lines: list[SubtitleLine] = []
    rejected = 0
    if len(blocks) > MAX_CUES + int(webvtt):  # + the WebVTT header
        raise media_error("bad_subtitles", f"the file has more than {MAX_CUES} cues",
                          kind="too_large", max_cues=MAX_CUES)
    for block_index, block in enumerate(blocks):
        rows = block.strip("\n").split("\n")
        if webvtt and (block_index == 0 and rows[0].startswith("WEBVTT")):
            continue
        if webvtt and rows[0].split(" ", 1)[0] in ("NOTE", "STYLE", "REGION"):
            continue
        timing_at = next((i for i, r in enumerate(rows[:3]) if "-->" in r), None)
        if timing_at is None:
            rejected += 1
            continue
        match = _CUE_TIMING_RE.match(rows[timing_at])
        if match is None:
            rejected += 1
            continue
        start = _seconds(match.groups()[:4])
        end = _seconds(match.groups()[4:])
        if end < start:
            rejected += 1
            continue
        cue_text = _clean("\n".join(rows[timing_at + 1:]), webvtt=webvtt)
        if len(cue_text) > MAX_CUE_CHARS:
            raise media_error("bad_subtitles", f"a cue at {start:.3f} s has more than "
                              f"{MAX_CUE_CHARS} characters", kind="too_large",
                              max_cue_chars=MAX_CUE_CHARS)
        if cue_text:
            lines.append(SubtitleLine(start=start, end=end, text=cue_text))
    if not lines and rejected:
        kind = "WebVTT" if webvtt else "SRT"
        raise media_error("bad_subtitles", f"no valid {kind} cue was found in the file",
                          rejected_blocks=rejected)
    lines.sort(key=lambda ln: (ln.start, ln.end))
    _check_piling(lines)
    return lines


def _check_piling(lines: Sequence[SubtitleLine]) -> None:
    """Refuse more than ``MAX_CUES_AT_ONCE`` cues on screen at one instant (sorted input)."""
    showing: list[float] = []  # end times of the cues on screen, a heap
    for line in lines:
        while showing and showing[0] < line.start:
            heapq.heappop(showing)
        heapq.heappush(showing, line.end)
        if len(showing) > MAX_CUES_AT_ONCE:
            raise media_error("bad_subtitles", f"more than {MAX_CUES_AT_ONCE} cues are on "
                              f"screen at {line.start:.3f} s",
                              max_cues_at_once=MAX_CUES_AT_ONCE)


def _seconds(groups: Sequence[str | None]) -> float:
    hours, minutes, seconds, fraction = groups
    if int(minutes or 0) >= 60 or int(seconds or 0) >= 60:
        raise media_error("bad_subtitles", "a cue time has minutes or seconds above 59")
    millis = int((fraction or "0").ljust(3, "0"))
    total = int(hours or 0) * 3600 + int(minutes or 0) * 60 + int(seconds or 0)
    return round(total + millis / 1000.0, 3)


def _clean(text: str, *, webvtt: bool) -> str:
    text = _ASS_OVERRIDE_RE.sub("", text)
    text = _TAG_RE.sub("", text)
    if webvtt or "&" in text:
        text = html.unescape(text)
    rows = [_SPACE_RE.sub(" ", r).strip() for r in text.replace("\\N", "\n").split("\n")]
    return " ".join(r for r in rows if r)


def _glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)

