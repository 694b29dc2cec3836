"""Decoding frames with the ffmpeg CLI: one process per segment (seek, then keep the wanted
frames with ``select``, counting decoded frames so indices stay exact), or one process for
many lone frames. ``app.media.frames`` plans the segments and falls back to this path
whenever the in-process decoder cannot vouch for a frame."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.media.ffmpeg import find_ffmpeg, input_args, media_error, run_tool
from app.media.probe import VideoProbe


@dataclass(frozen=True, slots=True)
class Segment:
    """One ffmpeg run: seek near ``first``, then keep the frames at the given offsets."""

    first: int  # frame index the run starts at (0 when it decodes from the start)
    seek_s: float | None  # -ss value relative to the container start; None: no seek
    indices: tuple[int, ...]  # sorted unique frame indices wanted from this run
    size: tuple[int, int]  # output width, height


@dataclass(frozen=True, slots=True)
class CliInput:
    """The video a process decodes: its file, probe, frame times and time limit."""

    path: Path
    probe: VideoProbe
    timeout_s: float
    frame_time: Callable[[int], float]


def decode_lone_frames(source: CliInput, segments: list[Segment]) -> list[list[np.ndarray]]:
    """One ffmpeg process, one seeking input per frame, concatenated: each input reads
    from its keyframe to its frame and stops. Falls back to a process per frame when
    any input comes back empty (a frame past the real end), since the output alone
    would not say which one."""
    width, height = segments[0].size
    frame_bytes = width * height * 3
    args = [str(find_ffmpeg()), "-nostdin", "-hide_banner", "-loglevel", "error"]
    chains = []
    for k, segment in enumerate(segments):
        seek = segment.seek_s or 0.0
        # Read just past the frame: -t stops the input, trim keeps exactly one frame.
        lead = source.frame_time(segment.indices[0]) - source.probe.start_time_s - seek
        args += ["-threads", "1", "-t", f"{max(lead, 0.0) + 1.0 / source.probe.fps:.6f}",
                 *input_args(source.path, seek_s=segment.seek_s)]
        chains.append(f"[{k}:{source.probe.video_stream_index}]trim=end_frame=1,"
                      f"scale={width}:{height}:flags=area,setpts=PTS-STARTPTS[f{k}]")
    graph = ";".join(chains) + ";" + "".join(f"[f{k}]" for k in range(len(segments)))
    graph += f"concat=n={len(segments)}:v=1:a=0[out]"
    args += ["-filter_complex", graph, "-map", "[out]", "-fps_mode", "passthrough",
             "-frames:v", str(len(segments)), "-f", "rawvideo", "-pix_fmt", "rgb24",
             "pipe:1"]
    result = run_tool(args, timeout_s=source.timeout_s,
                      max_stdout=frame_bytes * len(segments), what="decoding frames")
    if len(result.stdout) != frame_bytes * len(segments):
        return [decode_segment(source, segment, 1) for segment in segments]
    return [[np.frombuffer(result.stdout, dtype=np.uint8, count=frame_bytes,
                           offset=k * frame_bytes).reshape(height, width, 3)]
            for k in range(len(segments))]

def decode_segment(source: CliInput, segment: Segment, threads: int) -> list[np.ndarray]:
    width, height = segment.size
    offsets = [i - segment.first for i in segment.indices]
    frame_bytes = width * height * 3
    filters = []
    if offsets != [0]:
        filters.append(f"select='{select_expr(offsets)}'")
    filters.append(f"scale={width}:{height}:flags=area")
    args = [str(find_ffmpeg()), "-nostdin", "-hide_banner", "-loglevel", "error",
            "-threads", str(threads),
            *input_args(source.path, seek_s=segment.seek_s),
            "-map", f"0:{source.probe.video_stream_index}", "-an", "-sn", "-dn",
            "-vf", ",".join(filters), "-fps_mode", "passthrough",
            "-frames:v", str(len(offsets)), "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    result = run_tool(args, timeout_s=source.timeout_s, max_stdout=frame_bytes * len(offsets),
                      what="decoding frames")
    got = len(result.stdout) // frame_bytes
    if result.returncode != 0 and got == 0:
        raise media_error("unreadable_codec",
                          "the video could not be decoded: " + tail(result.stderr),
                          kind="unsupported")
    frames = [
        np.frombuffer(result.stdout, dtype=np.uint8, count=frame_bytes, offset=k * frame_bytes)
        .reshape(height, width, 3)
        for k in range(got)
    ]
    if got < len(offsets):
        # The container promised more frames than the stream holds (a truncated tail
        # or an edit list); the nearest frame that exists stands in for the missing ones.
        last = frames[-1] if frames else last_frame(source, segment.size, threads)
        frames.extend(last for _ in range(len(offsets) - got))
    return frames

def last_frame(source: CliInput, size: tuple[int, int], threads: int) -> np.ndarray:
    width, height = size
    frame_bytes = width * height * 3
    window_s = 3.0
    max_frames = int(window_s * source.probe.fps * 4) + 8
    args = [str(find_ffmpeg()), "-nostdin", "-hide_banner", "-loglevel", "error",
            "-threads", str(threads), "-sseof", f"-{window_s:g}", *input_args(source.path),
            "-map", f"0:{source.probe.video_stream_index}", "-an", "-sn", "-dn",
            "-vf", f"scale={width}:{height}:flags=area", "-fps_mode", "passthrough",
            "-frames:v", str(max_frames), "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    result = run_tool(args, timeout_s=source.timeout_s, max_stdout=frame_bytes * max_frames,
                      what="decoding the last frames")
    got = len(result.stdout) // frame_bytes
    if got == 0:
        raise media_error(
            "frame_unavailable",
            "the last frames of the video cannot be decoded; the file is truncated or "
            "damaged: " + tail(result.stderr),
        )
    start = (got - 1) * frame_bytes
    return np.frombuffer(result.stdout, dtype=np.uint8, count=frame_bytes,
                         offset=start).reshape(height, width, 3)


def select_expr(offsets: Sequence[int]) -> str:
    """A ``select`` expression true for the given sorted frame counts: consecutive runs
    become ``between``, joined as a balanced sum (ffmpeg's parser nests a flat chain too
    deeply once it holds about a hundred terms)."""
    runs: list[tuple[int, int]] = []
    for offset in offsets:
        if runs and offset == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], offset)
        else:
            runs.append((offset, offset))
    terms = [f"eq(n,{a})" if a == b else f"between(n,{a},{b})" for a, b in runs]
    while len(terms) > 1:
        terms = [f"({terms[i]}+{terms[i + 1]})" if i + 1 < len(terms) else terms[i]
                 for i in range(0, len(terms), 2)]
    return terms[0]


def tail(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "ffmpeg gave no reason"
