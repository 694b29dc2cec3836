"""``vidnav eval`` end to end on the CPU profile: a needle benchmark generated from a title
card and a piece of the real narrated clip hidden in Big Buck Bunny, run in process (interrupted and
resumed) and through ``vidnav serve`` over HTTP, then reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.media.compose import Piece, compose
from app.services.evaluation.needle import build_needle, card_clips, read_clips
from app.services.evaluation.runs import read_records
from scripts.fetch_videos import fetch_video
from tests.e2e.cpu_support import REPO, vidnav, vidnav_env
from tests.e2e.test_cpu_profile import server as serve_fixture  # noqa: F401

pytestmark = pytest.mark.slow

server = serve_fixture


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cgbench.json of two videos: a 12 s card in 50 s, and 35 s of the narrated clip
    (from 85 s: "It only takes a minute" is said about 102 s in, 17 s into the piece) in
    80 s of Big Buck Bunny."""
    root = tmp_path_factory.mktemp("needle")
    cards = card_clips(root / "clips", 1)
    piece = root / "clips" / "narrated_85s.mp4"
    compose([Piece(35.0, fetch_video("narrated"), start=85.0)], piece)
    narrated = root / "clips" / "narrated.jsonl"
    narrated.write_text(json.dumps({
        "id": "license", "video": piece.name, "type": "speech",
        "question": "How long does it take to get a license?",
        "options": ["About an hour", "A week", "A minute", "A day"], "answer": "C",
        "clues": [[13.0, 23.0]]}) + "\n")
    return build_needle(read_clips([cards, narrated]), [fetch_video("bbb")], root / "bench",
                        [50.0, 80.0])


def _eval(data_dir: Path, *args: str, key: str | None = None) -> subprocess.CompletedProcess:
    env = vidnav_env(data_dir)
    if key:
        env["VIDNAV_API_KEY"] = key
    return subprocess.run([sys.executable, "-m", "app.cli", "eval", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900, check=False)


@pytest.fixture(scope="module")
def local_run(bench: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    data_dir = tmp_path_factory.mktemp("eval-local")
    run = data_dir / "local.jsonl"
    videos = str(bench.parent / "videos")
    first = _eval(data_dir, "run", "cgbench", str(bench), "--videos", videos, "--out", str(run),
                  "--limit", "1")
    assert first.returncode == 0, first.stderr[-3000:]
    assert len(read_records(run)) == 1
    again = _eval(data_dir, "run", "cgbench", str(bench), "--videos", videos, "--out", str(run))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "1 questions answered now" in again.stdout  # the first was not asked again
    yield run


def test_in_process_run_answers_and_localizes(local_run: Path) -> None:
    records = {r["qid"]: r for r in read_records(local_run)}
    assert set(records) == {"needle_000_0", "needle_001_0"}
    for record in records.values():
        assert record["status"] == "succeeded", record["error"]
        assert record["correct"], (record["prediction"], record["truth"])
        assert record["f1"] > 0 and record["reward"] > 1
        assert record["rounds"] == len(record["trace"]) >= 2
        assert record["model_seconds"]["policy"] > 0
        assert 0 < record["visited_share"] < 1
    sft, rl = local_run.with_name("sft.jsonl"), local_run.with_name("rl.jsonl")
    proc = _eval(local_run.parent, "export", str(local_run), "--sft", str(sft), "--rl", str(rl))
    assert proc.returncode == 0, proc.stderr[-3000:]
    conversations = [json.loads(line) for line in sft.read_text().splitlines()]
    assert len(conversations) == 2
    for row in conversations:
        roles = [m["role"] for m in row["messages"]]
        assert roles[:3] == ["system", "user", "assistant"] and roles[-1] == "assistant"
        assert "<answer>" in row["messages"][-1]["content"][0]["text"]
    assert all(json.loads(line)["reward"]["total"] > 1 for line in rl.read_text().splitlines())


@pytest.mark.parametrize("strategy", ["flat", "uniform"])
def test_baselines_in_the_same_harness(strategy: str, local_run: Path, bench: Path) -> None:
    run = local_run.with_name(f"{strategy}.jsonl")
    proc = _eval(local_run.parent, "run", "cgbench", str(bench), "--videos",
                 str(bench.parent / "videos"), "--out", str(run), "--strategy", strategy,
                 "--leaves", "4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = read_records(run)
    assert len(records) == 2
    for record in records:
        assert record["status"] == "succeeded" and record["rounds"] == 1
        assert record["prediction"] and record["f1"] is not None
        assert record["model_seconds"]["policy"] > 0
        kinds = {step["kind"] for step in record["trace"]}
        assert kinds == ({"get_caption", "answer"} if strategy == "flat"
                         else {"video_qa", "answer"})
    if strategy == "flat":  # it read every leaf: the whole video
        assert all(r["visited_share"] == 1.0 and r["caption_seconds_read"] > 0
                   for r in records)
    else:
        assert all(r["tool_calls"]["video_qa"] == 4 for r in records)
    bad = _eval(local_run.parent, "run", "cgbench", str(bench), "--out", str(run),
                "--strategy", "flat", "--server", "http://127.0.0.1:9")
    assert bad.returncode == 2 and "unknown_strategy" in bad.stderr


def test_http_run_and_the_report(local_run: Path, bench: Path,
                                 server: tuple[str, str, Path], tmp_path: Path) -> None:
    base, key, _data_dir = server
    run = tmp_path / "http.jsonl"
    proc = _eval(tmp_path, "run", "cgbench", str(bench), "--videos",
                 str(bench.parent / "videos"), "--out", str(run), "--server", base,
                 "--concurrency", "2", "--label", "over HTTP", key=key)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = read_records(run)
    assert len(records) == 2 and all(r["status"] == "succeeded" for r in records)
    assert all(r["correct"] and r["trace"] for r in records)
    out = tmp_path / "report"
    baselines = [str(p) for p in (local_run.with_name("flat.jsonl"),
                                  local_run.with_name("uniform.jsonl")) if p.is_file()]
    shown = vidnav(tmp_path, "eval", "report", str(local_run), str(run), *baselines,
                   "--out", str(out))
    assert shown.returncode == 0, shown.stderr
    md = (out / "report.md").read_text()
    assert "| local | cgbench | navigate | paper |" in md  # in process: the paper preset
    assert "| over HTTP | cgbench | navigate | the server's |" in md
    assert "100.0" in md
    html = (out / "report.html").read_text()
    assert html.startswith("<!doctype html>") and "<svg" in html
    if os.environ.get("VIDNAV_EVAL_REPORT_COPY"):  # for the README's screenshot
        target = Path(os.environ["VIDNAV_EVAL_REPORT_COPY"])
        target.mkdir(parents=True, exist_ok=True)
        for name in ("report.md", "report.html"):
            (target / name).write_text((out / name).read_text())
