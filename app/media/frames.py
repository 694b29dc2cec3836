"""Decoding the sampled frames of tree nodes: seek, decode as little as exactness allows.

A 2-hour video must not be decoded from the start to fetch 16 frames. Requested frame
indices are grouped into *segments*, each decoded from one seek.

MP4/MOV, Matroska/WebM and NUT files are decoded in this process with PyAV
(``app.media.inprocess``): no process per segment, no raw frames through a pipe, packets
no frame predicts from left undecoded unless wanted, and only wanted frames scaled. Other
containers, and any segment the in-process pass cannot vouch for, go to the ffmpeg CLI:
one process per segment that seeks to its first frame (`-ss` before `-i`, accurate seek)
and keeps the wanted frames with the ``select`` filter, counting decoded frames, so
indices stay exact even when timestamps are irregular.

Both paths return the same frames, byte for byte at full size; scaled, their pixels can
differ by a few levels (up to 16 of 255 measured on Big Buck Bunny at 512 px) where the
CLI's swscale (the system ffmpeg) and PyAV's bundled, newer one round differently.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from app.media import inprocess
from app.media.cli_decode import (
    CliInput,
    Segment,
    decode_lone_frames,
    decode_segment,
)
from app.media.ffmpeg import (
    check_local_file,
    find_ffprobe,
    input_args,
    media_error,
    run_tool,
)
from app.media.probe import VideoProbe

DEFAULT_TIMEOUT_S = 120.0
# Starting one ffmpeg process and seeking costs about as much as decoding this many
# frames; it is the fixed part of the price of a new segment.
SEEK_OVERHEAD_FRAMES = 24
# A segment never decodes more than this many frames, so each process stays well inside
# its timeout and long passes spread over the workers.
MAX_SEGMENT_SPAN = 3000
KEYFRAME_SAMPLE_S = 30.0
# Lone frames decoded by one ffmpeg process (an input, hence a decoder, each): at most
# this many, and no more than fit the decoder memory budget (about 16 decoded pictures
# per decoder), so 4K video gets fewer per process than 720p.
MAX_INPUTS_PER_PROCESS = 8
DECODER_MEMORY_BUDGET = 128 * 2**20
# Demuxers that seek through a keyframe index, so an accurate seek lands on or before the
# target. Others (MPEG-TS/PS, raw streams, Ogg...) seek by byte position and may land
# after it (AVI also, once B-frames blur its timestamps); their frames are decoded from
# the start, which is slow but exact.
INDEXED_SEEK_DEMUXERS = frozenset({"mov", "mp4", "matroska", "webm", "nut"})
# In process a seek is cheap and a pass restarts at keyframes by itself, so frames share a
# pass unless the gap between them spans this many keyframe intervals (and at least
# IN_PROCESS_MIN_SPLIT frames): then a separate pass can run beside it on another core.
IN_PROCESS_SPLIT_GOPS = 1.5
IN_PROCESS_MIN_SPLIT = 48


def scaled_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The output size whose longest side is at most ``max_side``; never upscales."""
    if max_side < 1:
        raise media_error("invalid_frame_request", f"max_side must be positive, not {max_side}")
    longest = max(width, height)
    if longest <= max_side:
        return width, height
    factor = max_side / longest
    return max(1, round(width * factor)), max(1, round(height * factor))


class FrameReader:
    """Reads frames of one probed video by index; safe to share between threads."""

    def __init__(self, path: str | os.PathLike[str], probe: VideoProbe, *,
                 timeout_s: float = DEFAULT_TIMEOUT_S, workers: int | None = None,
                 in_process: bool = True) -> None:
        """``in_process=False`` keeps every read on the ffmpeg CLI (tests compare both)."""
        self.path: Path = check_local_file(path)
        self.probe = probe
        self.timeout_s = timeout_s
        cores = os.cpu_count() or 2
        self.workers = max(1, workers if workers is not None else min(cores, 4))
        self._timestamps: np.ndarray | None = None
        self._gop: float | None = None
        self.seekable = bool(INDEXED_SEEK_DEMUXERS & set(probe.container.split(",")))
        self.in_process = in_process and bool(
            inprocess.IN_PROCESS_DEMUXERS & set(probe.container.split(",")))
        self._decoder: inprocess.InProcessDecoder | None = None
        self._decoder_lock = threading.Lock()
        # Frames the in-process path handed back to the CLI (0 on every file it handles).
        self.cli_fallback_frames = 0

    # --- public API --------------------------------------------------------------------

    def read(self, indices: Sequence[int], max_side: int) -> list[np.ndarray]:
        """Frames at ``indices`` (RGB uint8 HxWx3, same order, duplicates allowed), scaled
        so the longest side is at most ``max_side``."""
        return self.read_many([(indices, max_side)])[0]

    def read_many(self, requests: Sequence[tuple[Sequence[int], int]]
                  ) -> list[list[np.ndarray]]:
        """``read`` for many nodes at once: frames of all requests with the same
        ``max_side`` are fetched together, so neighbouring nodes share decoding passes.

        The result holds every frame in memory: callers captioning a whole level of a long
        video should pass a level in chunks of nodes."""
        wanted: dict[tuple[int, int], set[int]] = {}
        for indices, max_side in requests:
            checked = self._check_indices(indices)
            size = scaled_size(self.probe.width, self.probe.height, max_side)
            wanted.setdefault(size, set()).update(checked)
        decoded: dict[tuple[int, tuple[int, int]], np.ndarray] = {}
        leftover: dict[tuple[int, int], list[int]] = {}
        for size, idx in wanted.items():
            found, rest = self._read_in_process(sorted(idx), size)
            decoded.update(((index, size), frame) for index, frame in found.items())
            if rest:
                leftover[size] = rest
        segments = [seg for size, idx in leftover.items() for seg in self._plan(idx, size)]
        for segment, frames in zip(segments, self._run_segments(segments), strict=True):
            for index, frame in zip(segment.indices, frames, strict=True):
                decoded[(index, segment.size)] = frame
        results: list[list[np.ndarray]] = []
        for indices, max_side in requests:
            size = scaled_size(self.probe.width, self.probe.height, max_side)
            results.append([decoded[(int(i), size)] for i in indices])
        return results

    def frame_time(self, index: int) -> float:
        """Presentation time (seconds, container clock) of the frame at ``index``."""
        stamps = self._frame_timestamps()
        if stamps is not None:
            return float(stamps[min(index, len(stamps) - 1)])
        return self.probe.video_start_time_s + index / self.probe.fps

    def close(self) -> None:
        """Close the containers the in-process path keeps open (garbage collection would)."""
        with self._decoder_lock:
            decoder, self._decoder = self._decoder, None
        if decoder is not None:
            decoder.close()

    # --- in-process decoding -------------------------------------------------------------

    def _in_process_decoder(self) -> inprocess.InProcessDecoder | None:
        with self._decoder_lock:
            if self._decoder is None and self.in_process:
                try:
                    self._decoder = inprocess.InProcessDecoder(
                        self.path, self.probe, timeout_s=self.timeout_s,
                        pool_size=self.workers)
                except inprocess.InProcessUnusable:
                    self.in_process = False
            return self._decoder

    def _read_in_process(self, indices: list[int], size: tuple[int, int]
                         ) -> tuple[dict[int, np.ndarray], list[int]]:
        """Frames decoded in process, and the indices left for the ffmpeg CLI."""
        decoder = self._in_process_decoder() if indices else None
        if decoder is None:
            return {}, indices
        try:
            clock = inprocess.FrameClock(self.probe.video_start_time_s, self.probe.fps,
                                         self.probe.num_frames, self._frame_timestamps())
            passes = self._plan_in_process(decoder, indices, clock)
        except inprocess.InProcessUnusable:
            return {}, indices
        convert = self._converter(size)
        parallel = min(self.workers, len(passes))
        threads = max(1, (os.cpu_count() or 2) // parallel)

        def run(group: list[int]) -> dict[int, np.ndarray] | None:
            try:
                return decoder.decode(group, clock, convert, threads=threads)
            except inprocess.InProcessUnusable:
                return None

        if parallel == 1:
            outputs = [run(group) for group in passes]
        else:
            with ThreadPoolExecutor(max_workers=parallel) as pool:
                outputs = list(pool.map(run, passes))
        frames: dict[int, np.ndarray] = {}
        rest: list[int] = []
        for group, output in zip(passes, outputs, strict=True):
            if output is None:
                rest.extend(group)
            else:
                frames.update(output)
        with self._decoder_lock:
            self.cli_fallback_frames += len(rest)
        return frames, sorted(rest)

    def _plan_in_process(self, decoder: inprocess.InProcessDecoder, indices: list[int],
                         clock: inprocess.FrameClock) -> list[list[int]]:
        """Split sorted unique indices into passes at gaps long enough that a keyframe
        almost surely lies inside (so no reference frame is decoded by two passes). When
        that leaves fewer passes than workers, cut them further at the keyframes their
        packets show between wanted frames: each part then decodes from its own keyframe,
        the same reference frames a single pass would, on its own core."""
        split = max(IN_PROCESS_MIN_SPLIT, IN_PROCESS_SPLIT_GOPS * decoder.keyframe_interval())
        passes: list[list[int]] = [[indices[0]]]
        for index in indices[1:]:
            group = passes[-1]
            if index - group[-1] <= split and index - group[0] < MAX_SEGMENT_SPAN:
                group.append(index)
            else:
                passes.append([index])
        if len(passes) >= self.workers:
            return passes
        parts: list[list[int]] = []
        for group in passes:
            keys = decoder.keyframes(group[0], group[-1], clock) if len(group) > 1 else []
            parts.append([group[0]])
            for before, index in zip(group, group[1:], strict=False):
                if any(before < key <= index for key in keys):
                    parts.append([index])
                else:
                    parts[-1].append(index)
        # Longest first, so the last part to finish is a short one.
        return sorted(parts, key=lambda part: part[-1] - part[0], reverse=True)

    def _converter(self, size: tuple[int, int]) -> Callable[[Any], np.ndarray]:
        """Scale to ``size`` as the CLI does, then turn upright as its autorotation does
        (so scale to the stored orientation first)."""
        width, height = size
        turns = (self.probe.rotation // 90) % 4
        if turns % 2:
            width, height = height, width
        return inprocess.rgb_converter(width, height, turns)

    # --- planning ------------------------------------------------------------------------

    def _check_indices(self, indices: Sequence[int]) -> list[int]:
        checked: list[int] = []
        for raw in indices:
            if isinstance(raw, bool) or not isinstance(raw, int | np.integer):
                raise media_error("invalid_frame_request", f"frame index {raw!r} is not an int")
            index = int(raw)
            if not 0 <= index < self.probe.num_frames:
                raise media_error(
                    "frame_out_of_range",
                    f"frame {index} is outside 0..{self.probe.num_frames - 1}",
                    index=index, num_frames=self.probe.num_frames,
                )
            checked.append(index)
        return checked

    def _plan(self, indices: list[int], size: tuple[int, int]) -> list[Segment]:
        """Split sorted unique indices into segments by comparing decode-through cost with
        the cost of a fresh seek (overhead plus, on average, half a keyframe interval)."""
        if not indices:
            return []
        if not self.seekable:
            return [Segment(first=0, seek_s=None, indices=tuple(indices), size=size)]
        new_seek_cost = SEEK_OVERHEAD_FRAMES + self._keyframe_interval() / 2
        groups: list[list[int]] = [[indices[0]]]
        for index in indices[1:]:
            group = groups[-1]
            if index - group[-1] <= new_seek_cost and index - group[0] < MAX_SEGMENT_SPAN:
                group.append(index)
            else:
                groups.append([index])
        segments = []
        for group in groups:
            first = self._first_with_same_time(group[0])
            seek = self._seek_position(first)
            segments.append(Segment(first=first if seek is not None else 0, seek_s=seek,
                                     indices=tuple(group), size=size))
        return segments

    def _first_with_same_time(self, index: int) -> int:
        """The first frame sharing ``index``'s timestamp: a seek cannot tell such frames
        apart, so it goes to the first and counts on from there."""
        stamps = self._frame_timestamps()
        if stamps is None or index >= len(stamps):
            return index
        return min(index, int(np.searchsorted(stamps, stamps[index], side="left")))

    def _seek_position(self, index: int) -> float | None:
        """An ``-ss`` value between the previous frame and this one: accurate seek then
        returns this frame first, whatever rounding the timestamps carry."""
        if index == 0:
            return None
        here = self.frame_time(index)
        before = self.frame_time(index - 1)
        gap = here - before if here > before else 1.0 / self.probe.fps
        seek = here - gap / 2 - self.probe.start_time_s
        return seek if seek > 0 else None

    def _keyframe_interval(self) -> float:
        """Average frames between keyframes, from the packet flags of the first seconds."""
        if self._gop is not None:
            return self._gop
        args = [str(find_ffprobe()), "-v", "error", "-hide_banner", *input_args(self.path),
                "-select_streams", str(self.probe.video_stream_index),
                "-read_intervals", f"%+{KEYFRAME_SAMPLE_S:g}",
                "-show_entries", "packet=flags", "-of", "csv=p=0"]
        limit = int(KEYFRAME_SAMPLE_S * self.probe.fps * 16) + 65536
        result = run_tool(args, timeout_s=self.timeout_s, max_stdout=limit,
                          what="reading the keyframe layout")
        flags = result.stdout.decode("ascii", "replace").split()
        keys = sum(1 for f in flags if f.startswith("K"))
        self._gop = len(flags) / keys if keys else float(len(flags) or self.probe.num_frames)
        return self._gop

    def _frame_timestamps(self) -> np.ndarray | None:
        """Sorted presentation times of every frame, read (not decoded) for VFR videos only;
        constant-rate videos use ``start + index / fps``."""
        if not self.probe.variable_frame_rate:
            return None
        if self._timestamps is None:
            args = [str(find_ffprobe()), "-v", "error", "-hide_banner",
                    *input_args(self.path), "-select_streams",
                    str(self.probe.video_stream_index), "-show_entries", "packet=pts_time",
                    "-of", "csv=p=0"]
            limit = self.probe.num_frames * 32 + 65536
            result = run_tool(args, timeout_s=self.timeout_s, max_stdout=limit,
                              what="reading the frame timestamps")
            values = []
            for token in result.stdout.decode("ascii", "replace").split():
                token = token.strip(",")
                try:
                    value = float(token)
                except ValueError:
                    continue
                if math.isfinite(value):
                    values.append(value)
            if not values:
                raise media_error("unreadable_codec", "the video's frame timestamps are unreadable",
                                  kind="unsupported")
            self._timestamps = np.sort(np.asarray(values, dtype=np.float64))
        return self._timestamps

    # --- decoding ------------------------------------------------------------------------

    def _run_segments(self, segments: list[Segment]) -> list[list[np.ndarray]]:
        """Decode every segment; lone far-apart frames share processes (one input each)
        so the fixed cost of starting ffmpeg is paid once per batch, not per frame."""
        if not segments:
            return []
        # A lone frame whose seek lands on it exactly (not on an earlier frame sharing its
        # timestamp) needs no counting, so any number of them can share a process.
        lone = [k for k, seg in enumerate(segments)
                if seg.indices == (seg.first,) and seg.seek_s is not None]
        jobs: list[list[int]] = [[k] for k, seg in enumerate(segments) if k not in set(lone)]
        per_process = self._inputs_per_process()
        jobs += [lone[i:i + per_process] for i in range(0, len(lone), per_process)]
        parallel = min(self.workers, len(jobs))
        source = CliInput(self.path, self.probe, self.timeout_s, self.frame_time)
        threads = max(1, (os.cpu_count() or 2) // parallel)

        def run(job: list[int]) -> list[list[np.ndarray]]:
            if len(job) == 1:
                return [decode_segment(source, segments[job[0]], threads)]
            return decode_lone_frames(source, [segments[k] for k in job])

        if parallel == 1:
            outputs = [run(job) for job in jobs]
        else:
            with ThreadPoolExecutor(max_workers=parallel) as pool:
                outputs = list(pool.map(run, jobs))
        frames: dict[int, list[np.ndarray]] = {}
        for job, output in zip(jobs, outputs, strict=True):
            frames.update(zip(job, output, strict=True))
        return [frames[k] for k in range(len(segments))]

    def _inputs_per_process(self) -> int:
        decoder_bytes = self.probe.width * self.probe.height * 1.5 * 16
        return max(1, min(MAX_INPUTS_PER_PROCESS, int(DECODER_MEMORY_BUDGET // decoder_bytes)))
