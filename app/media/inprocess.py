"""Decoding the sampled frames of tree nodes in this process with PyAV (libavcodec).

Three savings over an ffmpeg process per segment, none of which changes a decoded pixel:

- no process start and no raw frames through a pipe; only wanted frames are scaled and
  converted to RGB;
- a packet that no other frame predicts from is not decoded unless it is wanted: for H.264
  a picture whose slices all carry ``nal_ref_idc == 0`` is never a reference (and carries no
  memory-management commands), so leaving it out leaves the decoder's state unchanged;
- reference frames that only lead up to a keyframe are not decoded when no wanted frame
  before that keyframe is still to come: the decoder is drained and restarted at the
  keyframe, the state a seek to it would give.

Frames are named by their presentation timestamps (``FrameClock``), which is how the
seeking ffmpeg path names them too. Whatever a pass cannot vouch for (a timestamp off the
frame grid, a frame that never came out, a libav error) raises ``InProcessUnusable`` and
the caller decodes those frames with the ffmpeg CLI instead.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from app.media.clock import FrameClock, InProcessUnusable
from app.media.ffmpeg import SAFE_DEMUXERS, media_error
from app.media.h264 import h264_is_disposable, h264_length_size
from app.media.probe import VideoProbe

__all__ = ["DecodeCounts", "FrameClock", "InProcessDecoder", "InProcessUnusable",
           "rgb_converter"]

# Containers the in-process path opens: those that seek through a keyframe index (the same
# set the ffmpeg path seeks in); the demuxer libav picks must be one of them.
IN_PROCESS_DEMUXERS = frozenset({"mov", "mp4", "matroska", "webm", "nut"})
# Demuxer options that keep libav to the one local file: only the file protocol, only the
# container demuxers the probe accepts, no external data references in MOV/MP4.
OPEN_OPTIONS = {
    "protocol_whitelist": "file",
    "format_whitelist": ",".join(SAFE_DEMUXERS),
    "enable_drefs": "0",
    "use_absolute_path": "0",
}
# Packets held back (not yet needed) before they are sent to the decoder anyway, so a
# stretch without keyframes does not pile up compressed data.
MAX_PENDING_PACKETS = 256
# A pass gives up looking for a missing frame once packets this many frames past the last
# wanted one come out of the demuxer (more than any decoder's reordering).
REORDER_SLACK = 64
SEEK_ATTEMPTS = 4
KEYFRAME_SAMPLE_PACKETS = 2000
KEYFRAME_SAMPLE_S = 30.0


def rgb_converter(width: int, height: int, turns: int) -> Callable[[Any], np.ndarray]:
    """A ``VideoFrame`` -> RGB uint8 array function: area-average scaling to ``width`` x
    ``height`` (as the CLI's ``scale=flags=area``), then ``turns`` quarter turns counter-
    clockwise (the display rotation the CLI applies). Each thread keeps one swscale
    context: building one per frame costs more than the scaling itself."""
    local = threading.local()

    def convert(frame: Any) -> np.ndarray:
        reformatter = getattr(local, "reformatter", None)
        if reformatter is None:
            reformatter = local.reformatter = VideoReformatter()
        image = reformatter.reformat(frame, width=width, height=height, format="rgb24",
                                     interpolation="AREA", threads=1).to_ndarray()
        return np.ascontiguousarray(np.rot90(image, turns)) if turns % 4 else image

    return convert


@dataclass(slots=True)
class DecodeCounts:
    """What the in-process passes did, for tests and the benchmark."""

    passes: int = 0
    packets_decoded: int = 0
    packets_skipped: int = 0
    restarts: int = 0
    seeks: int = 0


class _Source:
    """One open container with its decoder, used by one pass at a time."""

    def __init__(self, path: Path, stream_index: int, threads: int) -> None:
        self.threads = threads
        try:
            self.container = av.open(f"file:{path}", "r", container_options=dict(OPEN_OPTIONS))
        except (av.FFmpegError, OSError) as exc:
            raise InProcessUnusable(f"libav cannot open the file: {exc}") from None
        try:
            demuxers = set(self.container.format.name.split(","))
            if not demuxers & IN_PROCESS_DEMUXERS:
                raise InProcessUnusable(f"container {self.container.format.name} is not indexed")
            if not 0 <= stream_index < len(self.container.streams):
                raise InProcessUnusable("the probed video stream is missing")
            stream = self.container.streams[stream_index]
            if stream.type != "video":
                raise InProcessUnusable("the probed video stream is not video")
            self.stream: Any = stream
            ctx = stream.codec_context
            ctx.thread_type = "FRAME" if threads > 1 else "SLICE"
            ctx.thread_count = threads
            self.ctx: Any = ctx
            if stream.time_base is None:
                raise InProcessUnusable("the video stream has no time base")
            self.time_base = float(stream.time_base)
            self.length_size = (h264_length_size(ctx.extradata)
                                if ctx.name == "h264" else None)
            self.h264 = ctx.name == "h264"
        except BaseException:
            self.container.close()
            raise

    def disposable(self, packet: Any) -> bool:
        return self.h264 and h264_is_disposable(bytes(packet), self.length_size)

    def close(self) -> None:
        self.container.close()


class InProcessDecoder:
    """Decodes frames of one probed video with PyAV; safe to share between threads (each
    pass takes an open container of its own from a small pool)."""

    def __init__(self, path: Path, probe: VideoProbe, *, timeout_s: float,
                 pool_size: int = 4) -> None:
        self.path = path
        self.probe = probe
        self.timeout_s = timeout_s
        self.pool_size = pool_size
        self.counts = DecodeCounts()
        self._pool: list[_Source] = []
        self._lock = threading.Lock()
        self._gop: float | None = None
        self._release(self._acquire(1))  # fail here, not mid-read, on a file libav refuses

    # --- pool ----------------------------------------------------------------------------

    def _acquire(self, threads: int) -> _Source:
        with self._lock:
            for k, source in enumerate(self._pool):
                if source.threads == threads:
                    return self._pool.pop(k)
        return _Source(self.path, self.probe.video_stream_index, threads)

    def _release(self, source: _Source) -> None:
        with self._lock:
            self._pool.append(source)
            extra = self._pool[:-self.pool_size] if len(self._pool) > self.pool_size else []
            del self._pool[:len(extra)]
        for old in extra:
            old.close()

    def close(self) -> None:
        with self._lock:
            sources, self._pool = self._pool, []
        for source in sources:
            source.close()

    # --- facts ---------------------------------------------------------------------------

    def keyframe_interval(self) -> float:
        """Average frames between keyframes, from the packet flags of the first seconds."""
        if self._gop is not None:
            return self._gop
        source = self._acquire(1)
        try:
            self._seek(source, None)
            packets = keys = 0
            first: float | None = None
            for packet in source.container.demux(source.stream):
                if packet.size == 0:
                    break
                packets += 1
                keys += bool(packet.is_keyframe)
                if packet.pts is not None:
                    seconds = packet.pts * source.time_base
                    first = seconds if first is None else first
                    if seconds - first > KEYFRAME_SAMPLE_S:
                        break
                if packets >= KEYFRAME_SAMPLE_PACKETS:
                    break
        except av.FFmpegError as exc:
            raise InProcessUnusable(f"reading the keyframe layout failed: {exc}") from None
        finally:
            self._release(source)
        self._gop = packets / keys if keys else float(max(packets, 1))
        return self._gop

    def keyframes(self, first: int, last: int, clock: FrameClock) -> list[int]:
        """Indices of the keyframes after ``first`` up to ``last``, read from the packets
        (no decoding): where a run of wanted frames can be cut into independent passes."""
        source = self._acquire(1)
        found: list[int] = []
        try:
            self._seek(source, clock.seek_time(first) if first > 0 else None)
            for packet in source.container.demux(source.stream):
                if packet.size == 0 or packet.pts is None:
                    break
                names = clock.frames_at(packet.pts * source.time_base)
                if names is None:
                    continue
                if names.start > last:
                    break
                if packet.is_keyframe and names.start > first:
                    found.append(names.start)
        except (av.FFmpegError, InProcessUnusable):
            self._discard(source)
            return []
        self._release(source)
        return found

    # --- decoding ------------------------------------------------------------------------

    def decode(self, indices: Sequence[int], clock: FrameClock,
               convert: Callable[[Any], np.ndarray], *, threads: int = 1
               ) -> dict[int, np.ndarray]:
        """The frames at sorted unique ``indices``, each passed through ``convert`` (a
        ``VideoFrame`` to an array), from one seek and one pass over the packets."""
        deadline = time.monotonic() + self.timeout_s
        source = self._acquire(threads)
        try:
            result = self._decode(source, list(indices), clock, convert, deadline)
        except av.FFmpegError as exc:
            self._discard(source)
            raise InProcessUnusable(f"libav failed: {exc}") from None
        except BaseException:
            self._discard(source)
            raise
        self._release(source)
        return result

    def _discard(self, source: _Source) -> None:
        source.close()

    def _decode(self, source: _Source, wanted: list[int], clock: FrameClock,
                convert: Callable[[Any], np.ndarray], deadline: float
                ) -> dict[int, np.ndarray]:
        first = wanted[0]
        seek: float | None = clock.seek_time(first) if first > 0 else None
        gop = max(1, round(self._gop or 1))
        for attempt in range(SEEK_ATTEMPTS + 1):
            self._seek(source, seek)
            landed = self._pass(source, wanted, clock, convert, deadline)
            if isinstance(landed, dict):
                return landed
            # The seek landed after the first wanted frame (a demuxer that seeks by decode
            # time, or an open-GOP leading frame): go back further, at last to the start.
            if seek is None:
                raise InProcessUnusable("the first keyframe comes after the wanted frame")
            back = min(landed, first) - gop * 2 ** attempt
            seek = clock.seek_time(back) if back > 0 and attempt < SEEK_ATTEMPTS - 1 else None
        raise InProcessUnusable("no seek lands before the wanted frame")

    def _seek(self, source: _Source, seconds: float | None) -> None:
        stream = source.stream
        if seconds is None:
            target = stream.start_time if stream.start_time is not None else 0
        else:
            target = math.floor(seconds / source.time_base)
        source.container.seek(int(target), stream=stream, backward=True, any_frame=False)
        source.ctx.flush_buffers()
        with self._lock:
            self.counts.seeks += 1

    def _pass(self, source: _Source, wanted: list[int], clock: FrameClock,
              convert: Callable[[Any], np.ndarray], deadline: float
              ) -> dict[int, np.ndarray] | int:
        """Decode from the keyframe the seek landed on; returns the frames, or the index of
        that keyframe when it lies after the first wanted frame."""
        ctx = source.ctx
        time_base = source.time_base
        wanted_set = set(wanted)
        uncovered = set(wanted)  # wanted frames whose packet has not come by yet
        unseen: dict[int, int] = {}  # first index of a wanted timestamp -> packets to come
        found: dict[int, np.ndarray] = {}
        emitted: dict[int, int] = {}  # first index of a timestamp -> frames named so far
        pending: list[Any] = []
        started = False
        decoded = skipped = restarts = 0

        def take(frames: Iterable[Any]) -> None:
            for frame in frames:
                if frame.pts is None:
                    raise InProcessUnusable("a decoded frame has no timestamp")
                names = clock.frames_at(frame.pts * time_base)
                if names is None:
                    continue
                order = emitted.get(names.start, 0)
                emitted[names.start] = order + 1
                if order >= len(names):
                    raise InProcessUnusable("more frames share a timestamp than counted")
                index = names.start + order
                if index in wanted_set and index not in found:
                    found[index] = convert(frame)

        def send(packet: Any) -> None:
            nonlocal decoded
            decoded += 1
            take(ctx.decode(packet))

        for packet in source.container.demux(source.stream):
            if packet.size == 0:
                break
            if time.monotonic() > deadline:
                raise media_error(
                    "media_timeout",
                    f"decoding frames took longer than {self.timeout_s:g} s and was stopped",
                    timeout_s=self.timeout_s)
            if packet.pts is None:
                raise InProcessUnusable("a packet has no timestamp")
            seconds = packet.pts * time_base
            names = clock.frames_at(seconds)
            if not started:
                if not packet.is_keyframe:
                    continue  # a demuxer that lands before a keyframe: nothing decodes yet
                late = (names.start > wanted[0] if names is not None
                        else seconds > clock.time_of(wanted[0]))
                if late:
                    return names.start if names is not None else wanted[-1]
                started = True
            elif (packet.is_keyframe and pending and names is not None
                  and min(uncovered, default=names.start) >= names.start
                  and all(count <= 0 for count in unseen.values())):
                # Everything still wanted comes after this keyframe: the held-back
                # references are not needed; restart the decoder here, as a seek would.
                take(ctx.decode(None))
                ctx.flush_buffers()
                skipped += len(pending)
                pending.clear()
                restarts += 1
            if names is not None and not wanted_set.isdisjoint(names):
                for held in pending:
                    send(held)
                pending.clear()
                send(packet)
                unseen[names.start] = unseen.get(names.start, len(names)) - 1
                uncovered.difference_update(names)
                if not uncovered and all(count <= 0 for count in unseen.values()):
                    break
            elif source.disposable(packet):
                skipped += 1
            else:
                pending.append(packet)
                if len(pending) > MAX_PENDING_PACKETS:
                    for held in pending:
                        send(held)
                    pending.clear()
            if names is not None and names.start > wanted[-1] + REORDER_SLACK:
                break
        take(ctx.decode(None))
        ctx.flush_buffers()
        skipped += len(pending)
        with self._lock:
            self.counts.passes += 1
            self.counts.packets_decoded += decoded
            self.counts.packets_skipped += skipped
            self.counts.restarts += restarts
        missing = wanted_set - found.keys()
        if missing:
            raise InProcessUnusable(f"{len(missing)} wanted frames did not come out")
        return found
