"""evaluation: navigation against the flat and uniform baselines on a generated needle
benchmark, with the same models (the CPU profile), in one ``vidnav eval`` harness.

The benchmark: three title cards ("The secret word is X") and the real narrated clip (two
questions about what is said, clue intervals from its transcript) hidden at random points
of Big Buck Bunny filler, in videos of 2 to 7 minutes. Every video is ingested once
(eager captions, the paper caption preset, a fresh data directory); then each strategy
answers every question.
Reported per strategy: accuracy (the reference's rule), localization F1, model seconds per
question spent answering, and the caption bill of what it read (generation seconds of
every caption read, cached or not: what it would cost on a cold cache).

Run: ``.venv/bin/python -m bench.evaluation [--no-write]`` from the repository root.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.results import finish, load_average

NAME = "evaluation"
LENGTHS = [120.0, 420.0, 240.0, 300.0]
NARRATED = [
    {"id": "license", "question": "How long does it take to get a license?",
     "options": ["About an hour", "A week", "A minute", "A day"], "answer": "C",
     "clues": [[98.0, 108.0]], "type": "speech"},
    {"id": "copyright", "question": "What does copyright protect your creativity against?",
     "options": ["Bad reviews", "Uses you don't consent to", "Hardware theft", "Fire"],
     "answer": "B", "clues": [[64.0, 74.0]], "type": "speech"},
]


def build(root: Path) -> Path:
    from app.services.evaluation.needle import build_needle, card_clips, read_clips
    from scripts.fetch_videos import fetch_video

    cards = card_clips(root / "clips", 3)
    narrated = root / "clips" / "narrated.jsonl"
    video = str(fetch_video("narrated"))
    narrated.write_text("".join(json.dumps({**q, "video": video}) + "\n" for q in NARRATED))
    clips = read_clips([cards, narrated])  # cards first, the narrated clip last
    return build_needle(clips, [fetch_video("bbb")], root / "bench", LENGTHS, seed=7)


def run_all(bench: Path, data_dir: Path) -> tuple[dict[str, list[dict]], float]:
    from app.bootstrap import open_runtime
    from app.services.evaluation.baselines import BaselineDeployment
    from app.services.evaluation.local import LocalDeployment
    from app.services.evaluation.readers import read_benchmark
    from app.services.evaluation.runs import RunMeta, read_records, run_benchmark
    from app.settings import Settings

    items = read_benchmark("cgbench", bench, bench.parent / "videos")
    settings = Settings(data_dir=data_dir, caption_mode="eager", caption_preset="paper")
    out: dict[str, list[dict]] = {}
    with open_runtime(settings) as runtime:
        local = LocalDeployment(runtime)
        started = time.perf_counter()
        for item in items:
            local.prepare(item)
        prepare_s = time.perf_counter() - started
        for strategy in ("navigate", "flat", "uniform"):
            print(f"{strategy}: {len(items)} questions…", file=sys.stderr, flush=True)
            deployment = local if strategy == "navigate" else BaselineDeployment(
                local, strategy, leaves=8)
            run = data_dir / f"{strategy}.jsonl"
            run_benchmark(items, deployment, run,
                          RunMeta(benchmark="cgbench", deployment="in-process",
                                  strategy=strategy, label=strategy), concurrency=1)
            out[strategy] = read_records(run)
    return out, prepare_s


def section(runs: dict[str, list[dict]], prepare_s: float, videos: int, questions: int,
            load: str) -> str:
    from app.services.evaluation.report import summarize

    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"## {NAME}", "",
             f"{now}, Python {platform.python_version()}, {platform.machine()}, "
             f"{os.cpu_count()} CPUs; CPU profile, embedded default, eager captions, the paper "
             "caption preset (128/64/32 frames); a needle "
             f"benchmark of {videos} videos ({', '.join(f'{x:.0f}' for x in LENGTHS)} s: three "
             "title cards and the narrated clip hidden in Big Buck Bunny), "
             f"{questions} questions; ingest of all videos {prepare_s:.1f} s, shared by the "
             "three strategies. uniform asks video_qa on 8 evenly spaced leaves. Command: "
             "`.venv/bin/python -m bench.evaluation`.", "",
             "| strategy | accuracy | F1 | rounds | model s / question (policy + captioner + "
             "video_qa) | caption bill read / question | wall s / question (p50) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    base = None
    for name, records in runs.items():
        s = summarize(records)
        ms = s["model_seconds"]
        bill = s["caption_read"]
        base = base or (s["model_total"] + bill)
        lines.append(
            f"| {name} | {s['accuracy']:.0%} ({sum(r['correct'] for r in records)}/"
            f"{len(records)}) | {s['f1']:.2f} | {s['rounds']:.1f} | {s['model_total']:.2f} "
            f"({ms['policy']:.2f} + {ms['captioner']:.2f} + {ms['video_qa']:.2f}) | "
            f"{bill:.2f} s | {s['latency']['p50']:.2f} |")
    totals = {name: summarize(r)["model_total"] + summarize(r)["caption_read"]
              for name, r in runs.items()}
    nav = totals["navigate"]
    lines += ["", "Model seconds plus caption bill per question: " + ", ".join(
        f"{name} {value:.2f} s ({value / nav:.2f}x navigate)" for name, value in totals.items())
        + f". Load average at the end: {load} on {os.cpu_count()} CPUs (shared machine)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or NAME).splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="vidnav-bench-eval-") as tmp:
        root = Path(tmp)
        print("building the needle benchmark…", file=sys.stderr, flush=True)
        bench = build(root / "needle")
        runs, prepare_s = run_all(bench, root / "data")
        questions = len(json.loads(bench.read_text()))
    finish(NAME, section(runs, prepare_s, len(LENGTHS), questions, load_average()),
           write=not args.no_write)


if __name__ == "__main__":
    main()
