"""The numbers of a run report: accuracy overall, per question type and duration bucket,
rounds and tool calls, latency percentiles, model seconds per role, accuracy against
rounds, localization; several runs side by side with the paper's published numbers.

Percentiles interpolate linearly between the closest ranks (numpy's default): the p-th
percentile of sorted values ``v`` is ``v[k] + (v[k+1] - v[k]) * f`` where
``k + f = (n - 1) * p / 100``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from app.core.trace import ROLES, TOOL_CALL_KINDS

Record = dict[str, Any]

# LongVideo-R1's published accuracy (%): with its own captions / with Qwen3-VL captions.
PAPER: dict[str, dict[str, float]] = {
    "lvbench": {"LongVideo-R1": 50.0, "LongVideo-R1 (Qwen3-VL captions)": 60.7},
    "mlvu": {"LongVideo-R1": 68.1, "LongVideo-R1 (Qwen3-VL captions)": 71.3},
    "videomme-subs": {"LongVideo-R1 (long, w/ subs)": 64.4,
                      "LongVideo-R1 (long, w/ subs, Qwen3-VL captions)": 68.6},
}
PAPER_ROUNDS = 10.5
# Which of a run's figures the paper's number is: the overall accuracy, unless named here.
PAPER_FIGURE = {"videomme-subs": "the accuracy of the long bucket",
                "mlvu": "M-avg (the mean of per-task accuracies)"}
ROUND_BINS = ((1, 2), (3, 5), (6, 10), (11, 20), (21, 10**6))


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def _accuracy(records: Sequence[Record]) -> float:
    return _mean([1.0 if r["correct"] else 0.0 for r in records])


def _groups(records: Sequence[Record], key: str) -> dict[str, dict[str, float]]:
    by: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        for name in (str(r.get(key) or "").split(",") if key == "task" else [str(r.get(key))]):
            if name and name != "None":
                by[name].append(r)
    return {name: {"n": len(rs), "accuracy": _accuracy(rs)} for name, rs in sorted(by.items())}


def round_bin(rounds: int) -> str:
    for low, high in ROUND_BINS:
        if low <= rounds <= high:
            return f"{low}-{high}" if high < 10**6 else f"{low}+"
    return "0"


def summarize(records: Sequence[Record]) -> dict[str, Any]:
    """Every figure of the report for one run."""
    n = len(records)
    tasks = _groups(records, "task")
    clued = [r for r in records if r.get("f1") is not None]
    walls = [float(r["wall_s"]) for r in records]
    by_rounds: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        by_rounds[round_bin(int(r["rounds"]))].append(r)
    return {
        "n": n,
        "accuracy": _accuracy(records),
        "accuracy_missing_wrong": _mean([1.0 if r["correct"] and not r["missing"] else 0.0
                                         for r in records]),
        "lenient": _mean([1.0 if r["lenient"] else 0.0 for r in records]),
        "missing": sum(1 for r in records if r["missing"]),
        "m_avg": _mean([t["accuracy"] for t in tasks.values()]),
        "per_task": tasks,
        "per_bucket": _groups(records, "bucket"),
        "rounds": _mean([float(r["rounds"]) for r in records]),
        "tool_calls": {k: _mean([float(r["tool_calls"].get(k, 0)) for r in records])
                       for k in TOOL_CALL_KINDS},
        "captions_generated": _mean([float(r["captions_generated"]) for r in records]),
        "captions_cached": _mean([float(r["captions_cached"]) for r in records]),
        "latency": {f"p{p}": percentile(walls, p) for p in (50, 90, 99)},
        "model_seconds": {role: _mean([float(r["model_seconds"].get(role, 0.0))
                                       for r in records]) for role in ROLES},
        "model_total": _mean([sum(float(v) for v in r["model_seconds"].values())
                              for r in records]),
        "caption_read": _mean([float(r["caption_seconds_read"]) for r in records
                               if r.get("caption_seconds_read") is not None]),
        "prepare_s": sum(float(r.get("prepare_s") or 0.0) for r in records),
        "visited_share": _mean([float(r["visited_share"]) for r in records]),
        "by_rounds": {name: {"n": len(rs), "accuracy": _accuracy(rs)}
                      for name, rs in sorted(by_rounds.items(),
                                             key=lambda kv: int(kv[0].split("-")[0].rstrip("+")))},
        "clued": len(clued),
        "f1": _mean([float(r["f1"]) for r in clued]),
        "reward": _mean([float(r["reward"]) for r in clued]),
    }


def _pct(value: float) -> str:
    return "–" if math.isnan(value) else f"{100 * value:.1f}"


def _num(value: float, digits: int = 2) -> str:
    return "–" if math.isnan(value) else f"{value:.{digits}f}"


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def markdown(runs: Sequence[tuple[dict[str, Any], Sequence[Record]]]) -> str:
    """The report of one or more runs (meta, records) as Markdown."""
    summaries = [(meta, summarize(records)) for meta, records in runs]
    out = ["# vidnav evaluation report", ""]
    head = ["run", "benchmark", "strategy", "caption preset", "max rounds", "n",
            "accuracy %", "lenient %", "missing", "M-avg %", "rounds", "F1", "reward",
            "p50 s", "p90 s", "p99 s", "model s/q", "caption s read/q"]
    rows = [[str(m.get("label")), str(m.get("benchmark", "?")), str(m.get("strategy", "?")),
             str(m.get("preset", "?")), str(m.get("max_rounds") or "default"), str(s["n"]),
             _pct(s["accuracy"]), _pct(s["lenient"]), str(s["missing"]), _pct(s["m_avg"]),
             _num(s["rounds"], 1), _num(s["f1"]), _num(s["reward"]),
             _num(s["latency"]["p50"], 1), _num(s["latency"]["p90"], 1),
             _num(s["latency"]["p99"], 1), _num(s["model_total"]), _num(s["caption_read"])]
            for m, s in summaries]
    for bench in sorted({str(m.get("benchmark")) for m, _ in summaries}):
        for name, value in PAPER.get(bench, {}).items():
            rows.append([f"paper: {name}", bench, "navigate", "paper", "30", "–",
                         f"{value:.1f}", "–", "–", "–", f"~{PAPER_ROUNDS}", "–", "–", "–", "–",
                         "–", "–", "–"])
    out += ["## Runs side by side", ""] + _table(head, rows) + [""]
    for bench in sorted({str(m.get("benchmark")) for m, _ in summaries}):
        if bench in PAPER:
            figure = PAPER_FIGURE.get(bench, "the overall accuracy")
            out += [f"The paper's {bench} numbers compare with {figure} (the authors' "
                    "models and captions).", ""]
    out += ["Accuracy follows the reference: exact match on the letter, a missing prediction "
            "scored as \"A\" (the `missing` column counts them); `lenient` reads a letter out "
            "of free-form answers. M-avg: the mean of per-type accuracies (MLVU). model s/q: "
            "model seconds per question, all roles, spent while answering; caption s read/q: "
            "what generating every caption the question read cost (cached or not: the bill "
            "on a cold cache).", ""]
    for meta, s in summaries:
        label = meta.get("label")
        out += [f"## {label}", ""]
        out += [f"- accuracy {_pct(s['accuracy'])} % (missing counted wrong: "
                f"{_pct(s['accuracy_missing_wrong'])} %), lenient {_pct(s['lenient'])} %",
                f"- rounds {_num(s['rounds'], 2)} per question; tool calls "
                + ", ".join(f"{k} {_num(v)}" for k, v in s["tool_calls"].items()),
                f"- captions generated {_num(s['captions_generated'], 1)}, cached "
                f"{_num(s['captions_cached'], 1)} per question; visited share "
                f"{_pct(s['visited_share'])} %",
                "- model seconds per question: "
                + ", ".join(f"{k} {_num(v)}" for k, v in s["model_seconds"].items()),
                f"- latency p50 {_num(s['latency']['p50'])} s, p90 "
                f"{_num(s['latency']['p90'])} s, p99 {_num(s['latency']['p99'])} s; "
                f"video preparation {_num(s['prepare_s'], 1)} s in all",
                f"- localization ({s['clued']} questions with clues): F1 {_num(s['f1'], 3)}, "
                f"reward {_num(s['reward'], 3)}", ""]
        for title, key in (("question type", "per_task"), ("duration", "per_bucket"),
                           ("rounds used", "by_rounds")):
            if s[key]:
                out += [f"### Accuracy by {title}", ""]
                out += _table([title, "n", "accuracy %"],
                              [[k, str(v["n"]), _pct(v["accuracy"])] for k, v in s[key].items()])
                out.append("")
    return "\n".join(out)
