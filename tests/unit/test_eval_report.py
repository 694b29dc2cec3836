"""The report's numbers against a run computed by hand; runs resume where they stopped."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import pytest

from app.core.trace import TraceRound
from app.errors import InvalidInput
from app.services.evaluation.items import BenchItem
from app.services.evaluation.page import page, write_report
from app.services.evaluation.records import Answered, make_record
from app.services.evaluation.report import markdown, percentile, summarize
from app.services.evaluation.runs import RunMeta, read_records, run_benchmark

OPTS = ("A. a", "B. b", "C. c", "D. d")


def _item(qid: str, answer: str, task: str, bucket: str,
          clues: tuple[tuple[float, float], ...] = ()) -> BenchItem:
    return BenchItem(qid=qid, video=Path(f"/v/{qid}.mp4"), question=f"{qid}?", options=OPTS,
                     answer=answer, task=task, bucket=bucket, clues=clues)


def _rounds(n: int, looked: tuple[float, float] | None = None) -> list[TraceRound]:
    rounds = [TraceRound(index=i, kind="video_qa", raw_reply="") for i in range(n - 1)]
    if looked is not None:
        rounds[0] = TraceRound(index=0, kind="get_caption", raw_reply="", node=[1, 1],
                               node_key="1-1", start=looked[0], end=looked[1])
    return [*rounds, TraceRound(index=n - 1, kind="answer", raw_reply="")]


def _answered(answer: str | None, rounds: list[TraceRound], wall_s: float,
              policy_s: float) -> Answered:
    summary = {"roles": {"policy": {"model_seconds": policy_s, "prompt_tokens": 10,
                                    "completion_tokens": 2}},
               "tool_calls": {"get_caption_medium": 1}, "captions_generated": 2,
               "captions_cached": 1, "visited_share": 0.1}
    return Answered(answer=answer, status="succeeded" if answer else "failed", rounds=rounds,
                    summary=summary, wall_s=wall_s)


def hand_run() -> list[dict]:
    """Four questions. q1: right, looked at 0-40 s against the clue 30-50 s (coverage
    1/2, precision 1/4: F1 1/3, reward 4/3). q2: wrong, clue never visited (F1 0,
    reward 0). q3: no answer, truth A (the reference counts it right). q4: "(B) b" for B:
    wrong exactly, right leniently."""
    return [
        make_record(_item("q1", "C", "TG", "short", ((30.0, 50.0),)),
                    _answered("C", _rounds(3, (0.0, 40.0)), 1.0, 2.0)),
        make_record(_item("q2", "D", "TG", "long", ((100.0, 110.0),)),
                    _answered("A", _rounds(5), 2.0, 4.0)),
        make_record(_item("q3", "A", "TG", "long"), _answered(None, _rounds(10), 4.0, 6.0)),
        make_record(_item("q4", "B", "Sum", "short"), _answered("(B) b", _rounds(12), 10.0, 8.0)),
    ]


def test_report_numbers_match_the_hand_computed_run() -> None:
    s = summarize(hand_run())
    assert s["n"] == 4 and s["missing"] == 1
    assert s["accuracy"] == 0.5  # q1, q3 (missing scored as "A")
    assert s["accuracy_missing_wrong"] == 0.25
    assert s["lenient"] == 0.75  # q4's "(B) b" reads as B
    assert s["per_task"]["TG"] == {"n": 3, "accuracy": pytest.approx(2 / 3)}
    assert s["per_task"]["Sum"] == {"n": 1, "accuracy": 0.0}
    assert s["m_avg"] == pytest.approx(1 / 3)
    assert s["per_bucket"] == {"long": {"n": 2, "accuracy": 0.5},
                               "short": {"n": 2, "accuracy": 0.5}}
    assert s["clued"] == 2
    assert s["f1"] == pytest.approx((1 / 3 + 0) / 2)
    assert s["reward"] == pytest.approx((4 / 3 + 0) / 2)
    # walls 1, 2, 4, 10: p50 at rank 1.5, p90 at 2.7, p99 at 2.97
    assert s["latency"]["p50"] == pytest.approx(3.0)
    assert s["latency"]["p90"] == pytest.approx(8.2)
    assert s["latency"]["p99"] == pytest.approx(9.82)
    assert s["rounds"] == 7.5
    assert s["model_seconds"]["policy"] == 5.0 and s["model_seconds"]["captioner"] == 0.0
    assert s["by_rounds"] == {"3-5": {"n": 2, "accuracy": 0.5}, "6-10": {"n": 1, "accuracy": 1.0},
                              "11-20": {"n": 1, "accuracy": 0.0}}
    assert s["tool_calls"]["get_caption_medium"] == 1.0


def test_percentiles_interpolate_between_ranks() -> None:
    assert percentile([5.0], 99) == 5.0
    assert percentile([3, 1, 2], 50) == 2
    assert math.isnan(percentile([], 50))


def test_markdown_and_page_show_runs_beside_the_paper(tmp_path: Path) -> None:
    meta = {"label": "nav-10", "benchmark": "lvbench", "strategy": "navigate",
            "preset": "paper", "max_rounds": 10}
    md = markdown([(meta, hand_run()), ({**meta, "label": "nav-30"}, hand_run()[:2])])
    assert "| nav-10 | lvbench | navigate | paper | 10 | 4 | 50.0 | 75.0 | 1 | 33.3 |" in md
    assert "| nav-30 |" in md
    assert "paper: LongVideo-R1 | lvbench" in md and "| 50.0 |" in md and "60.7" in md
    assert "p50 3.00 s, p90 8.20 s, p99 9.82 s" in md
    assert "The paper's lvbench numbers compare with the overall accuracy" in md
    html = page([(meta, hand_run())])
    assert html.count("<svg") >= 6 and "http://" not in html.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    assert "<script" not in html and "Accuracy per question type" in html
    run = tmp_path / "run.jsonl"
    run.write_text("".join(json.dumps(r) + "\n" for r in hand_run()))
    md_path, html_path = write_report([run], tmp_path / "out")
    assert "| run |" in md_path.read_text() and html_path.stat().st_size > 1000
    with pytest.raises(InvalidInput):
        write_report([tmp_path / "none.jsonl"], tmp_path / "out")


class Scripted:
    """A deployment answering from a table, failing where told (the run's bookkeeping is
    what is under test; the real deployments are exercised end to end)."""

    def __init__(self, answers: dict[str, str | None], fail: set[str] = frozenset()) -> None:
        self.answers, self.fail, self.asked = answers, fail, []
        self.lock = threading.Lock()

    def answer(self, item: BenchItem, max_rounds: int | None) -> Answered:
        with self.lock:
            self.asked.append(item.qid)
        if item.qid in self.fail:
            raise InvalidInput("the video is broken", code="video_failed")
        return _answered(self.answers[item.qid], _rounds(2), 0.1, 0.2)


def test_a_run_resumes_where_it_stopped(tmp_path: Path) -> None:
    items = [_item(f"q{i}", "B", "t", "short") for i in range(6)]
    run = tmp_path / "runs" / "r.jsonl"
    meta = RunMeta(benchmark="jsonl", deployment="scripted")
    first = Scripted({f"q{i}": "B" for i in range(6)})
    assert run_benchmark(items[:3], first, run, meta, concurrency=3) == 3
    with run.open("a") as fh:
        fh.write('{"qid": "q5", "pred')  # a crash mid-write
    seen: list[int] = []
    second = Scripted({f"q{i}": "A" for i in range(6)}, fail={"q4"})
    assert run_benchmark(items, second, run, meta, concurrency=2,
                         on_record=lambda r, done, total: seen.append(done)) == 3
    assert sorted(second.asked) == ["q3", "q4", "q5"]
    assert seen == [4, 5, 6]
    records = {r["qid"]: r for r in read_records(run)}
    assert len(records) == 6
    assert records["q4"]["status"] == "error" and records["q4"]["missing"]
    assert "video_failed" in records["q4"]["error"]
    assert records["q0"]["correct"] and not records["q5"]["correct"]
    third = Scripted({f"q{i}": "B" for i in range(6)})
    assert run_benchmark(items, third, run, meta) == 1  # the error is asked again
    assert third.asked == ["q4"]
    records = {r["qid"]: r for r in read_records(run)}
    assert len(records) == 6 and records["q4"]["correct"] and records["q4"]["status"] != "error"
    assert run_benchmark(items, third, run, meta) == 0  # nothing left
    with pytest.raises(InvalidInput) as info:
        run_benchmark(items, second, run, RunMeta(benchmark="mlvu", deployment="x"))
    assert info.value.code == "run_mismatch"


class Crashing(Scripted):
    def answer(self, item: BenchItem, max_rounds: int | None) -> Answered:
        if item.qid == "q2":
            raise RuntimeError("the process is going down")
        return super().answer(item, max_rounds)


def test_an_interrupted_run_stops_and_keeps_what_was_done(tmp_path: Path) -> None:
    items = [_item(f"q{i}", "B", "t", "short") for i in range(8)]
    run = tmp_path / "r.jsonl"
    meta = RunMeta(benchmark="jsonl", deployment="scripted")
    crashing = Crashing({f"q{i}": "B" for i in range(8)})
    with pytest.raises(RuntimeError):
        run_benchmark(items, crashing, run, meta, concurrency=1)
    assert [r["qid"] for r in read_records(run)] == ["q0", "q1"]
    assert len(crashing.asked) < 8  # the questions not started were dropped
    rest = Scripted({f"q{i}": "B" for i in range(8)})
    assert run_benchmark(items, rest, run, meta) == 6
