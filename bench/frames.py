"""Frame fetching on a 1-hour 720p H.264 video: vidnav's reader against sequential
decoding of the node's range and against decord's ``get_batch`` (the reference reader).

Builds ``.cache/bench/bbb_1h.mp4`` (Big Buck Bunny concatenated 6 times with ``-c copy``),
then times, side by side in one run, the 16 caption frames of random leaves (512 px) and
the 64 caption frames of random high nodes (256 px): vidnav's reader (in process, and its
ffmpeg-CLI path), sequential decoding of the node with the ffmpeg CLI (b) and in process
with PyAV (b2), and decord. Peak memory of each reader is taken in a fresh process (its
own peak RSS plus its children's). Results replace the "frames" section of
bench/RESULTS.md.

Usage: ``python -m bench.frames [--runs 5] [--no-write]``
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import av
import numpy as np

from app.core.tree import VideoGeometry, max_side
from app.media.frames import FrameReader, scaled_size
from app.media.h264 import h264_is_disposable, h264_length_size
from app.media.probe import VideoProbe, probe_video
from bench.results import finish, load_average

NAME = "frames"
ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / ".cache" / "bench"
COPIES = 6


def build_hour_video() -> Path:
    """Big Buck Bunny (10 min, 1280x720, H.264) six times over, stream-copied: 1 hour."""
    from scripts.fetch_videos import fetch_video

    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    out = BENCH_DIR / "bbb_1h.mp4"
    if out.exists() and out.stat().st_size > 0:
        return out
    source = fetch_video("bbb")
    listing = BENCH_DIR / "bbb_1h.txt"
    listing.write_text("".join(f"file '{source}'\n" for _ in range(COPIES)), "utf-8")
    partial = BENCH_DIR / "bbb_1h.partial.mp4"
    try:
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "concat", "-safe", "0",
                        "-i", str(listing), "-map", "0:v:0", "-c", "copy", "-f", "mp4",
                        str(partial)], check=True, timeout=600)
        os.replace(partial, out)
    finally:
        listing.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)
    return out


def sequential(path: Path, probe: VideoProbe, node_range: tuple[int, int],
               indices: Sequence[int], side: int) -> list[np.ndarray]:
    """The baseline: seek once to the node's first frame, decode every frame of its range
    and convert it, keep the sampled ones (what a frame-by-frame reader does)."""
    start, stop = node_range
    width, height = scaled_size(probe.width, probe.height, side)
    frame_bytes = width * height * 3
    wanted = set(indices)
    seek = max(0.0, (start - 0.5) / probe.fps)
    proc = subprocess.Popen(
        ["ffmpeg", "-v", "error", "-nostdin", "-threads", "2", "-ss", f"{seek:.6f}",
         "-i", str(path), "-map", "0:v:0", "-frames:v", str(stop - start),
         "-vf", f"scale={width}:{height}:flags=area", "-fps_mode", "passthrough",
         "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    kept: dict[int, np.ndarray] = {}
    for index in range(start, stop):
        raw = proc.stdout.read(frame_bytes)
        if len(raw) < frame_bytes:
            break
        if index in wanted:
            kept[index] = np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3)
    proc.stdout.close()
    proc.wait(timeout=60)
    return [kept[i] for i in indices]


def sequential_in_process(path: Path, probe: VideoProbe, node_range: tuple[int, int],
                          indices: Sequence[int], side: int) -> list[np.ndarray]:
    """The stronger baseline: PyAV in this process seeks once to the node's first frame,
    decodes every frame of its range (2 frame threads, as (b)) and scales only the sampled
    ones, with the conversion vidnav uses."""
    start, stop = node_range
    width, height = scaled_size(probe.width, probe.height, side)
    wanted = set(indices)
    kept: dict[int, np.ndarray] = {}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_type = "FRAME"
        stream.codec_context.thread_count = 2
        base = float(stream.time_base or 0)
        seek = probe.video_start_time_s + (start - 0.5) / probe.fps
        container.seek(max(0, math.floor(seek / base)), stream=stream, backward=True)
        for frame in container.decode(stream):
            index = round((float(frame.pts or 0) * base - probe.video_start_time_s)
                          * probe.fps)
            if index in wanted:
                kept[index] = frame.to_ndarray(width=width, height=height, format="rgb24",
                                               interpolation="AREA")
            if index >= stop - 1:
                break
    return [kept[i] for i in indices]


def packet_census(path: Path, probe: VideoProbe, node_range: tuple[int, int]
                  ) -> dict[str, float]:
    """What an exact reader must decode in a node's range: the share of H.264 packets that
    no frame predicts from, and the keyframe spacing."""
    start = node_range[0]
    packets = disposable = keys = 0
    with av.open(str(path)) as container:
        for index, packet, size in _packets_until(container, probe, node_range):
            if index < start:
                continue
            packets += 1
            keys += bool(packet.is_keyframe)
            disposable += h264_is_disposable(bytes(packet), size)
    return {"packets": packets, "disposable": disposable, "keyframes": keys}


def _packets_until(container: Any, probe: VideoProbe, node_range: tuple[int, int]
                   ) -> Iterator[tuple[int, Any, int]]:
    """(frame index, packet, AVCC length size) of the video stream from the keyframe at or
    before the range's first frame up to (not including) its end."""
    start, stop = node_range
    stream = container.streams.video[0]
    base = float(stream.time_base or 0)
    size = h264_length_size(stream.codec_context.extradata)
    container.seek(max(0, math.floor(start / probe.fps / base)), stream=stream, backward=True)
    for packet in container.demux(stream):
        if packet.size == 0 or packet.pts is None:
            return
        index = round(packet.pts * base * probe.fps)
        if index >= stop:
            return
        yield index, packet, size


def timed(fn: Callable[..., object], *args: object) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


DECORD_TIMER = r"""
import json, sys, time
import decord
path, indices = sys.argv[1], json.loads(sys.argv[2])
width, height = int(sys.argv[3]), int(sys.argv[4])
started = time.perf_counter()
reader = decord.VideoReader(path, width=width, height=height, num_threads=2)
opened = time.perf_counter()
reader.get_batch(indices).asnumpy()
print(json.dumps({"open_s": opened - started, "batch_s": time.perf_counter() - opened}))
"""


def decord_batch(path: Path, indices: list[int], size: tuple[int, int]) -> dict[str, float]:
    """Time decord's get_batch in a fresh process: decord keeps decoding in background
    threads after a batch and its memory grows by hundreds of MB a minute, so it must
    not live in the benchmark's own process."""
    out = subprocess.run([sys.executable, "-c", DECORD_TIMER, str(path), json.dumps(indices),
                          str(size[0]), str(size[1])], cwd=ROOT, check=True,
                         capture_output=True, text=True, timeout=600).stdout
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def decord_available() -> bool:
    try:
        import decord  # noqa: F401
    except ImportError:
        return False
    return True


MEMORY_PROBE = r"""
import json, sys
from pathlib import Path
path, kind, leaf, high = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
if kind == "vidnav":
    from app.media.frames import FrameReader
    from app.media.probe import probe_video
    reader = FrameReader(path, probe_video(path))
    reader.read(leaf, 512); reader.read(high, 256)
else:
    import decord
    for indices, (w, h) in ((leaf, (512, 288)), (high, (256, 144))):
        reader = decord.VideoReader(path, width=w, height=h, num_threads=2)
        reader.get_batch(indices).asnumpy()
        del reader
"""


def peak_memory(path: Path, kind: str, leaf: list[int], high: list[int]) -> dict[str, float]:
    """Peak RSS (MiB) of a fresh process fetching one leaf and one high node: the Python
    process alone, and it together with its ffmpeg children, sampled every 5 ms."""
    import psutil

    proc = subprocess.Popen([sys.executable, "-c", MEMORY_PROBE, str(path), kind,
                             json.dumps(leaf), json.dumps(high)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    watched = psutil.Process(proc.pid)
    own_peak = total_peak = 0
    while proc.poll() is None:
        try:
            own = watched.memory_info().rss
            total = own + sum(c.memory_info().rss for c in watched.children(recursive=True))
        except psutil.Error:
            continue
        own_peak, total_peak = max(own_peak, own), max(total_peak, total)
        time.sleep(0.005)
    if proc.returncode != 0:
        raise SystemExit(f"the {kind} memory probe failed ({proc.returncode})")
    return {"self_mb": own_peak / 2**20, "total_mb": total_peak / 2**20}


def max_level_difference(ours: Sequence[np.ndarray], theirs: Sequence[np.ndarray]) -> int:
    return max(int(np.abs(a.astype(np.int16) - b).max()) for a, b in zip(ours, theirs,
                                                                           strict=True))


def measure(runs: int, seed: int) -> dict[str, object]:
    video = build_hour_video()
    probe = probe_video(video)
    geometry = VideoGeometry(probe.num_frames, probe.fps)
    rng = random.Random(seed)
    leaves = geometry.nodes(3)
    highs = geometry.nodes(1)
    started = time.perf_counter()
    reader = FrameReader(video, probe)
    decoder = reader._in_process_decoder()  # opening the file and the keyframe layout,
    assert decoder is not None  # timed on their own as one-time set-up
    decoder.keyframe_interval()
    setup_s = time.perf_counter() - started
    started = time.perf_counter()
    cli_reader = FrameReader(video, probe, in_process=False)
    cli_reader._keyframe_interval()
    cli_setup_s = time.perf_counter() - started
    keys = ("leaf_vidnav", "leaf_cli", "leaf_sequential", "leaf_inprocess", "leaf_decord",
            "high_vidnav", "high_cli", "high_inprocess", "high_decord")
    results: dict[str, list[float]] = {k: [] for k in keys}
    high_sequential: list[float] = []
    use_decord = decord_available()
    decord_open: list[float] = []
    leaf_side, high_side = max_side(3), max_side(1)
    full = max(probe.width, probe.height)
    checks: dict[str, object] = {}
    census = {"packets": 0, "disposable": 0, "keyframes": 0}
    scaled_difference = 0
    leaf_packets: list[int] = []
    for run in range(runs):
        leaf = rng.choice(leaves)
        high = rng.choice(highs)
        leaf_idx = geometry.sample_frames(leaf)
        high_idx = geometry.sample_frames(high)
        leaf_range, high_range = geometry.frame_range(leaf), geometry.frame_range(high)
        counts = decoder.counts
        decoded, skipped = counts.packets_decoded, counts.packets_skipped
        started = time.perf_counter()
        ours = reader.read(leaf_idx, leaf_side)
        results["leaf_vidnav"].append(time.perf_counter() - started)
        leaf_decoded = counts.packets_decoded - decoded
        leaf_skipped = counts.packets_skipped - skipped
        leaf_packets.append(leaf_decoded)
        started = time.perf_counter()
        ref = sequential_in_process(video, probe, leaf_range, leaf_idx, leaf_side)
        results["leaf_inprocess"].append(time.perf_counter() - started)
        if not all(np.array_equal(a, b) for a, b in zip(ours, ref, strict=True)):
            raise SystemExit("vidnav's frames differ from sequential decoding in process")
        started = time.perf_counter()
        cli_ours = cli_reader.read(leaf_idx, leaf_side)
        results["leaf_cli"].append(time.perf_counter() - started)
        started = time.perf_counter()
        cli_ref = sequential(video, probe, leaf_range, leaf_idx, leaf_side)
        results["leaf_sequential"].append(time.perf_counter() - started)
        if not all(np.array_equal(a, b) for a, b in zip(cli_ours, cli_ref, strict=True)):
            raise SystemExit("vidnav's CLI frames differ from sequential CLI decoding")
        scaled_difference = max(scaled_difference, max_level_difference(ours, cli_ref))
        for key, reader_, idx, side in (("high_vidnav", reader, high_idx, high_side),
                                        ("high_cli", cli_reader, high_idx, high_side)):
            results[key].append(timed(reader_.read, idx, side))
        started = time.perf_counter()
        high_ref = sequential_in_process(video, probe, high_range, high_idx, high_side)
        results["high_inprocess"].append(time.perf_counter() - started)
        if not all(np.array_equal(a, b) for a, b in zip(reader.read(high_idx, high_side),
                                                         high_ref, strict=True)):
            raise SystemExit("vidnav's high-node frames differ from sequential decoding")
        if use_decord:
            for key, idx, side in (("leaf_decord", leaf_idx, leaf_side),
                                   ("high_decord", high_idx, high_side)):
                timing = decord_batch(video, idx, scaled_size(probe.width, probe.height, side))
                results[key].append(timing["batch_s"])
                decord_open.append(timing["open_s"])
        if run == 0:
            # A high node is 10 minutes: decoding it all once with the CLI is enough.
            high_sequential.append(timed(
                sequential, video, probe, high_range, high_idx, high_side))
            # Unscaled, both libav builds convert alike: the frames must be the same bytes.
            full_ours = reader.read(leaf_idx, full)
            full_ref = sequential(video, probe, leaf_range, leaf_idx, full)
            if not all(np.array_equal(a, b) for a, b in zip(full_ours, full_ref, strict=True)):
                raise SystemExit("vidnav's full-size frames differ from sequential decoding")
            checks["full_size_identical"] = True
        found = packet_census(video, probe, leaf_range)
        for key in census:
            census[key] += int(found[key])
        print(f"run {run + 1}/{runs}: leaf {leaf} vidnav {results['leaf_vidnav'][-1]:.3f}s "
              f"(decoded {leaf_decoded}, skipped {leaf_skipped} packets) cli path "
              f"{results['leaf_cli'][-1]:.3f}s sequential {results['leaf_sequential'][-1]:.3f}s "
              f"in process {results['leaf_inprocess'][-1]:.3f}s", file=sys.stderr)
    checks["scaled_vs_cli"] = scaled_difference
    leaf_idx = geometry.sample_frames(leaves[len(leaves) // 2])
    high_idx = geometry.sample_frames(highs[len(highs) // 2])
    memory = {"vidnav": peak_memory(video, "vidnav", leaf_idx, high_idx)}
    if use_decord:
        memory["decord"] = peak_memory(video, "decord", leaf_idx, high_idx)
    decode_cost = frame_type_costs(video, probe, geometry.frame_range(leaves[len(leaves) // 2]))
    return {
        "video": video, "probe": probe, "width": geometry.width, "runs": runs,
        "setup_s": setup_s, "cli_setup_s": cli_setup_s,
        "decord_setup_s": statistics.median(decord_open) if decord_open else None,
        "median": {k: statistics.median(v) for k, v in results.items() if v},
        "high_sequential": high_sequential[0], "memory": memory, "decord": use_decord,
        "high_frames": high_range[1] - high_range[0],
        "keyframe_interval": decoder.keyframe_interval(),
        "leaf_frames": geometry.frame_range(leaves[0]), "checks": checks, "census": census,
        "decode_cost": decode_cost, "fallbacks": reader.cli_fallback_frames,
        "counts": decoder.counts, "leaf_packets": statistics.median(leaf_packets),
    }


def frame_type_costs(path: Path, probe: VideoProbe, node_range: tuple[int, int]
                     ) -> dict[str, float]:
    """Decode time per packet kind over one leaf's range (one thread, every packet sent,
    timed around each send): what skipping unreferenced frames can save at most."""
    totals = {"reference": 0.0, "unreferenced": 0.0}
    counts = {"reference": 0, "unreferenced": 0}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        for _, packet, size in _packets_until(container, probe, node_range):
            kind = "unreferenced" if h264_is_disposable(bytes(packet), size) else "reference"
            started = time.perf_counter()
            stream.codec_context.decode(packet)
            totals[kind] += time.perf_counter() - started
            counts[kind] += 1
    return {k: totals[k] / counts[k] * 1000 for k in totals if counts[k]}


def report(m: dict[str, object]) -> str:
    med: dict[str, float] = m["median"]  # type: ignore[assignment]
    probe: VideoProbe = m["probe"]  # type: ignore[assignment]
    memory: dict[str, dict[str, float]] = m["memory"]  # type: ignore[assignment]
    census: dict[str, int] = m["census"]  # type: ignore[assignment]
    cost: dict[str, float] = m["decode_cost"]  # type: ignore[assignment]
    checks: dict[str, object] = m["checks"]  # type: ignore[assignment]
    leaf_range = m["leaf_frames"]
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    leaf_ratio = med["leaf_sequential"] / med["leaf_vidnav"]
    leaf_ratio2 = med["leaf_inprocess"] / med["leaf_vidnav"]
    high_ratio = float(m["high_sequential"]) / med["high_vidnav"]  # type: ignore[arg-type]
    rows = [
        "| fetch | (a) vidnav FrameReader | (a0) its ffmpeg-CLI path | (b) sequential decode "
        "of the node, ffmpeg CLI | (b2) sequential decode of the node, in process (PyAV) | "
        "(c) decord get_batch | (b)/(a) | (b2)/(a) | (c)/(a) | (a0)/(a) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key, label, seq in (("leaf", "leaf, 16 frames at 512 px", med["leaf_sequential"]),
                            ("high", "high node, 64 frames at 256 px", m["high_sequential"])):
        ours = med[f"{key}_vidnav"]
        dec = med.get(f"{key}_decord")
        seq2 = med[f"{key}_inprocess"]
        cli = med[f"{key}_cli"]
        rows.append(
            f"| {label} | {ours:.3f} s | {cli:.3f} s | {float(seq):.3f} s | "  # type: ignore[arg-type]
            f"{seq2:.3f} s | "
            + (f"{dec:.3f} s" if dec is not None else "decord not installed")
            + f" | {float(seq) / ours:.1f}x | {seq2 / ours:.1f}x | "  # type: ignore[arg-type]
            + (f"{dec / ours:.2f}x" if dec is not None else "-")
            + f" | {cli / ours:.1f}x |")
    mem_rows = [f"| {kind} | {v['self_mb']:.0f} MiB | {v['total_mb']:.0f} MiB |"
                for kind, v in memory.items()]
    vid_peak = memory["vidnav"]["total_mb"]
    decord_vs = ""
    if "leaf_decord" in med:
        verdict = "met" if med["leaf_vidnav"] <= med["leaf_decord"] else "NOT met"
        decord_vs = (f" Leaf not slower than decord: {verdict} "
                     f"({med['leaf_decord'] / med['leaf_vidnav']:.2f}x).")
    share = census["disposable"] / max(1, census["packets"])
    lines = [
        f"## {NAME}", "",
        f"{now}, Python {platform.python_version()}, ffmpeg CLI (Debian) and PyAV "
        f"{av.__version__} (bundled libavcodec "
        f"{'.'.join(map(str, av.library_versions['libavcodec']))}), "
        f"{os.cpu_count()} CPUs shared with other jobs; {probe.width}x{probe.height} H.264, "
        f"{probe.duration_s:.0f} s, {probe.num_frames} frames, {probe.fps:g} fps "
        f"(bbb.mp4 x{COPIES}, `-c copy`), tree width {m['width']} (leaf = "
        f"{leaf_range[1] - leaf_range[0]} frames); median of {m['runs']} random "  # type: ignore[index]
        "leaves / high nodes (the high node's CLI sequential decode is run once). (a) "
        "decodes in process; (a0) is the same reader kept on the ffmpeg CLI. Checked every "
        "run: (a) equals (b2) byte for byte and (a0) equals (b) byte for byte; at full size "
        "(no scaling) (a) equals (b) byte for byte"
        + (" (checked)" if checks.get("full_size_identical") else " (NOT checked)")
        + f"; scaled, (a) and (b) differ by at most {checks.get('scaled_vs_cli')} levels "
        "(the system ffmpeg's swscale against PyAV's newer one). decord runs in a fresh "
        "process per fetch (its reader keeps decoding and growing after a batch); its open "
        "time is excluded. Command: `.venv/bin/python -m bench.frames`.",
        "", *rows, "",
        "| peak memory (fresh process, leaf + high node) | Python process RSS | "
        "process + children RSS |",
        "| --- | --- | --- |", *mem_rows, "",
        f"Leaf: (b)/(a) = {leaf_ratio:.1f}x (target >= 5x: "
        f"{'met' if leaf_ratio >= 5 else 'NOT met'}); against the stronger in-process "
        f"baseline (b2)/(a) = {leaf_ratio2:.1f}x. High node: (b)/(a) = {high_ratio:.1f}x."
        f"{decord_vs} vidnav peak memory: {vid_peak:.0f} MiB (target < 400 MB: "
        f"{'met' if vid_peak < 381 else 'NOT met'}). "
        f"What an exact reader must decode: in the leaves' ranges {share:.1%} of the H.264 "
        f"packets are pictures no frame predicts from (nal_ref_idc 0), keyframes every "
        f"{float(m['keyframe_interval']):.0f} frames; decoding one costs "  # type: ignore[arg-type]
        f"{cost.get('unreferenced', float('nan')):.2f} ms against "
        f"{cost.get('reference', float('nan')):.2f} ms for a reference picture (one thread, "
        f"one leaf). (a) sends the decoder a median of {m['leaf_packets']:.0f} packets per "
        f"leaf of the ~{leaf_range[1] - leaf_range[0] + m['keyframe_interval'] / 2:.0f} "  # type: ignore[index,operator]
        "(b) and (b2) decode (the range plus, on average, half a keyframe interval before "
        "it): the reference pictures from the keyframe before the first sampled frame to "
        "the last one, less those between a sampled frame and a later keyframe, plus the "
        "sampled frames; this encode has no referenced B-frames, so that is all an exact "
        "reader can leave out. With 2 cores the leaf's parts run two at a time. Frames "
        f"handed to the CLI fallback over the whole run: {m['fallbacks']}. (b) also scales, "
        "converts and pipes every frame of the range; (b2) decodes every frame and scales "
        "only the sampled ones; the gap between (b2) and (a) is the skipped decoding, and "
        "the ratios move with the load that other jobs put on the 2 cores. "
        f"One-time reader set-up (open, keyframe layout): {m['setup_s']:.3f} s in process, "
        f"{m['cli_setup_s']:.3f} s for the CLI path"
        + (f"; decord VideoReader open: {m['decord_setup_s']:.3f} s." if m["decord"] else ".")
        + f" Load average at the end: {load_average()}.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    section = report(measure(args.runs, args.seed))
    finish(NAME, section, write=not args.no_write)


if __name__ == "__main__":
    main()
