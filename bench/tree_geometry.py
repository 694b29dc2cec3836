"""tree_geometry: building a video's whole caption tree, arithmetic vs materialised arrays.

Side by side in one run, for videos of 10 minutes, 1 hour and 24 hours, each set-up computes
every node's frame range and caption frame indices (all three levels):

(a) vidnav: ``VideoGeometry`` computes ``array_split`` chunk bounds with integer arithmetic;
(b) the reference's way: ``np.array_split`` over the array of all frame indices, nested per
    level, then ``np.linspace`` over each chunk.

Both must produce identical frame indices (checked). Printed: median wall time and the
peak of traced Python/numpy allocations, and the ratios (b) / (a). Results replace the
"tree_geometry" section of bench/RESULTS.md.

Run: ``.venv/bin/python -m bench.tree_geometry [--runs N]`` from the repository root.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np

from app.core.tree import LEVELS, VideoGeometry
from bench.results import write_section

NAME = "tree_geometry"
VIDEOS = [("10 min @ 30 fps", 18_000, 30.0), ("1 h @ 30 fps", 108_000, 30.0),
          ("24 h @ 60 fps", 5_184_000, 60.0)]

Tree = dict[tuple[int, ...], list[int]]


def vidnav_tree(geometry: VideoGeometry) -> Tree:
    return {node: geometry.sample_frames(node) for level in LEVELS
            for node in geometry.iter_nodes(level)}


def array_tree(geometry: VideoGeometry) -> Tree:
    width, config = geometry.width, geometry.config
    counts = {1: config.high_frames, 2: config.medium_frames, 3: config.low_frames}
    tree: Tree = {}

    def visit(node: tuple[int, ...], frames: np.ndarray) -> None:
        for i, chunk in enumerate(np.array_split(frames, width), start=1):
            child = (*node, i)
            # Every chunk is non-empty for these videos; the check below compares only those.
            tree[child] = np.linspace(chunk[0], chunk[-1], counts[len(child)], dtype=int).tolist()
            if len(child) < 3:
                visit(child, chunk)

    visit((), np.arange(geometry.num_frames))
    return tree


def measure(build: Callable[[VideoGeometry], Tree], geometry: VideoGeometry,
            runs: int) -> tuple[float, int, Tree]:
    times = []
    result: Tree = {}
    for _ in range(runs):
        gc.collect()
        start = time.perf_counter()
        result = build(geometry)
        times.append(time.perf_counter() - start)
    gc.collect()
    tracemalloc.start()
    build(geometry)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return statistics.median(times), peak, result



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for label, frames, fps in VIDEOS:
        geometry = VideoGeometry(frames, fps)
        t_a, mem_a, tree_a = measure(vidnav_tree, geometry, args.runs)
        t_b, mem_b, tree_b = measure(array_tree, geometry, args.runs)
        if tree_a != tree_b:
            raise SystemExit(f"{label}: the two set-ups disagree on sampled frames")
        rows.append((label, geometry.width, len(tree_a), t_a, t_b, mem_a, mem_b))
        print(f"{label}: width {geometry.width}, {len(tree_a)} nodes; "
              f"(a) {t_a * 1e3:.2f} ms {mem_a / 1e6:.2f} MB; (b) {t_b * 1e3:.2f} ms "
              f"{mem_b / 1e6:.2f} MB; time (b)/(a) {t_b / t_a:.2f}x, memory {mem_b / mem_a:.1f}x")
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    table = [
        f"## {NAME}",
        "",
        f"{stamp}, Python {platform.python_version()}, numpy {np.__version__}, "
        f"{platform.machine()}; every node's frame range and caption frames (64/32/16), "
        f"median of {args.runs} runs; peak traced allocations from one more run. "
        "Both set-ups produce identical frame indices (checked). "
        "Command: `.venv/bin/python -m bench.tree_geometry`.",
        "",
        "| video | width | nodes | (a) vidnav arithmetic | (b) nested np.array_split "
        "| time (b)/(a) | peak memory (a) | peak memory (b) | memory (b)/(a) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label, width, nodes, t_a, t_b, mem_a, mem_b in rows:
        table.append(
            f"| {label} | {width} | {nodes} | {t_a * 1e3:.2f} ms | {t_b * 1e3:.2f} ms "
            f"| {t_b / t_a:.2f}x | {mem_a / 1e6:.2f} MB | {mem_b / 1e6:.2f} MB "
            f"| {mem_b / mem_a:.1f}x |"
        )
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    table += ["", f"Load average at the end: {' '.join(f'{x:.2f}' for x in load or ())} "
              f"on {os.cpu_count()} CPUs.", ""]
    write_section(NAME, "\n".join(table))


if __name__ == "__main__":
    main()
