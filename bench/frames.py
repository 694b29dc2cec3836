"""Frame fetching on a 1-hour 720p H.264 video: vidnav's seeking reader against sequential
decoding of the node's range and against decord's ``get_batch`` (the reference reader).

Builds ``.cache/bench/bbb_1h.mp4`` (Big Buck Bunny concatenated 6 times with ``-c copy``),
then times, side by side in one run, the 16 caption frames of random leaves (512 px) and
the 64 caption frames of random high nodes (256 px). Peak memory of each reader is taken
in a fresh process (its own peak RSS plus its largest child's). Results replace the
"frames" section of bench/RESULTS.md.

Usage: ``python -m bench.frames [--runs 5] [--no-write]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from app.core.tree import VideoGeometry, max_side
from app.media.frames import FrameReader, scaled_size
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


def measure(runs: int, seed: int) -> dict[str, object]:
    video = build_hour_video()
    probe = probe_video(video)
    geometry = VideoGeometry(probe.num_frames, probe.fps)
    rng = random.Random(seed)
    leaves = geometry.nodes(3)
    highs = geometry.nodes(1)
    started = time.perf_counter()
    reader = FrameReader(video, probe)
    reader._keyframe_interval()  # the one-time layout probe, timed on its own
    setup_s = time.perf_counter() - started
    results: dict[str, list[float]] = {k: [] for k in (
        "leaf_vidnav", "leaf_sequential", "leaf_decord", "high_vidnav", "high_decord")}
    high_sequential: list[float] = []
    use_decord = decord_available()
    decord_open: list[float] = []
    checked = False
    for run in range(runs):
        leaf = rng.choice(leaves)
        high = rng.choice(highs)
        leaf_idx = geometry.sample_frames(leaf)
        high_idx = geometry.sample_frames(high)
        leaf_side, high_side = max_side(3), max_side(1)
        results["leaf_vidnav"].append(timed(reader.read, leaf_idx, leaf_side))
        results["leaf_sequential"].append(timed(
            sequential, video, probe, geometry.frame_range(leaf), leaf_idx, leaf_side))
        results["high_vidnav"].append(timed(reader.read, high_idx, high_side))
        if use_decord:
            for key, idx, side in (("leaf_decord", leaf_idx, leaf_side),
                                   ("high_decord", high_idx, high_side)):
                timing = decord_batch(video, idx, scaled_size(probe.width, probe.height, side))
                results[key].append(timing["batch_s"])
                decord_open.append(timing["open_s"])
        if run == 0:
            # A high node is 10 minutes: decoding it all once is enough to compare.
            high_range = geometry.frame_range(high)
            high_sequential.append(timed(
                sequential, video, probe, high_range, high_idx, high_side))
        if not checked:
            ours = reader.read(leaf_idx, leaf_side)
            ref = sequential(video, probe, geometry.frame_range(leaf), leaf_idx, leaf_side)
            if not all(np.array_equal(a, b) for a, b in zip(ours, ref, strict=True)):
                raise SystemExit("vidnav's frames differ from sequential decoding")
            checked = True
        print(f"run {run + 1}/{runs}: leaf {leaf} vidnav "
              f"{results['leaf_vidnav'][-1]:.2f}s sequential "
              f"{results['leaf_sequential'][-1]:.2f}s", file=sys.stderr)
    leaf_idx = geometry.sample_frames(leaves[len(leaves) // 2])
    high_idx = geometry.sample_frames(highs[len(highs) // 2])
    memory = {"vidnav": peak_memory(video, "vidnav", leaf_idx, high_idx)}
    if use_decord:
        memory["decord"] = peak_memory(video, "decord", leaf_idx, high_idx)
    return {
        "video": video, "probe": probe, "width": geometry.width, "runs": runs,
        "setup_s": setup_s,
        "decord_setup_s": statistics.median(decord_open) if decord_open else None,
        "median": {k: statistics.median(v) for k, v in results.items() if v},
        "high_sequential": high_sequential[0], "memory": memory, "decord": use_decord,
        "high_frames": high_range[1] - high_range[0],
        "keyframe_interval": reader._keyframe_interval(),
        "leaf_frames": geometry.frame_range(leaves[0]),
    }


def report(m: dict[str, object]) -> str:
    med: dict[str, float] = m["median"]  # type: ignore[assignment]
    probe: VideoProbe = m["probe"]  # type: ignore[assignment]
    memory: dict[str, dict[str, float]] = m["memory"]  # type: ignore[assignment]
    leaf_range = m["leaf_frames"]
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    leaf_ratio = med["leaf_sequential"] / med["leaf_vidnav"]
    per_frame = float(m["high_sequential"]) / int(m["high_frames"])  # type: ignore[arg-type]
    high_ratio = float(m["high_sequential"]) / med["high_vidnav"]  # type: ignore[arg-type]
    rows = [
        "| fetch | (a) vidnav FrameReader | (b) sequential decode of the node | "
        "(c) decord get_batch | (b)/(a) | (c)/(a) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for key, label, seq in (("leaf", "leaf, 16 frames at 512 px", med["leaf_sequential"]),
                            ("high", "high node, 64 frames at 256 px", m["high_sequential"])):
        ours = med[f"{key}_vidnav"]
        dec = med.get(f"{key}_decord")
        rows.append(
            f"| {label} | {ours:.3f} s | {float(seq):.3f} s | "  # type: ignore[arg-type]
            + (f"{dec:.3f} s" if dec is not None else "decord not installed")
            + f" | {float(seq) / ours:.1f}x | "  # type: ignore[arg-type]
            + (f"{dec / ours:.2f}x |" if dec is not None else "- |"))
    mem_rows = [f"| {kind} | {v['self_mb']:.0f} MiB | {v['total_mb']:.0f} MiB |"
                for kind, v in memory.items()]
    vid_peak = memory["vidnav"]["total_mb"]
    decord_vs = ""
    if "leaf_decord" in med:
        verdict = "met" if med["leaf_vidnav"] <= med["leaf_decord"] else "NOT met"
        decord_vs = (f" Leaf not slower than decord: {verdict} "
                     f"({med['leaf_decord'] / med['leaf_vidnav']:.2f}x).")
    lines = [
        f"## {NAME}", "",
        f"{now}, Python {platform.python_version()}, ffmpeg (Debian), "
        f"{os.cpu_count()} CPUs shared with other jobs; {probe.width}x{probe.height} H.264, "
        f"{probe.duration_s:.0f} s, {probe.num_frames} frames, {probe.fps:g} fps "
        f"(bbb.mp4 x{COPIES}, `-c copy`), tree width {m['width']} (leaf = "
        f"{leaf_range[1] - leaf_range[0]} frames); median of {m['runs']} random "  # type: ignore[index]
        "leaves / high nodes (the high node's sequential decode is run once). Frames are "
        "checked identical to sequential decoding. decord runs in a fresh process per fetch "
        "(its reader keeps decoding and growing after a batch); its open time is excluded. "
        "Command: `.venv/bin/python -m bench.frames`.",
        "", *rows, "",
        "| peak memory (fresh process, leaf + high node) | Python process RSS | "
        "process + ffmpeg children RSS |",
        "| --- | --- | --- |", *mem_rows, "",
        f"Leaf: (b)/(a) = {leaf_ratio:.1f}x (target >= 5x: "
        f"{'met' if leaf_ratio >= 5 else 'NOT met'}). High node: (b)/(a) = "
        f"{high_ratio:.1f}x.{decord_vs} vidnav peak memory with its ffmpeg children: "
        f"{vid_peak:.0f} MiB (target < 400 MB: {'met' if vid_peak < 381 else 'NOT met'}). "
        f"Why the leaf cannot reach 5x over (b) when frames must be exact: its 16 frames are "
        f"{(leaf_range[1] - leaf_range[0]) / 16:.0f} frames apart and keyframes "  # type: ignore[index]
        f"{float(m['keyframe_interval']):.0f} apart, so every frame of the range has to be "  # type: ignore[arg-type]
        "decoded by any exact reader (decord included); (a) saves the scaling, conversion "
        "and transfer of the other frames and nothing else. "
        f"Decoding from the start instead (no seeking) costs about {per_frame * 1000:.1f} ms "
        f"a frame (measured on the high node), so {per_frame * probe.num_frames / 2:.0f} s "
        "for a leaf in the middle of the hour (extrapolated, not run). "
        f"One-time reader set-up (keyframe layout probe): {m['setup_s']:.3f} s"
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
