"""One JSON record per question: what a deployment answered, scored, with its cost.

A record holds ``qid``, ``task``, ``bucket``, ``truth``, ``prediction``, ``correct`` (the
reference's rule), ``lenient``, ``missing``, ``status``/``error``, ``rounds``,
``tool_calls`` by kind, ``captions_generated``/``captions_cached``, ``model_seconds`` and
``tokens`` per role, ``caption_seconds_read`` (what generating every caption the
question read cost, cached or not: the strategies' caption bill on a cold cache; in
process only), ``wall_s`` (the question, from asking to its end), ``prepare_s``
(ingest and captions of its video, when this question paid for them), ``visited_share``,
``f1``/``coverage``/``precision``/``repeat``/``reward`` (None without clue intervals) and
``trace`` (every round as the navigator recorded it), ``start`` (the tree's width, the
duration and the high captions the policy was first shown; None for the baselines).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.core.scoring import score_rounds
from app.core.trace import ROLES, TOOL_CALL_KINDS, TraceRound
from app.services.evaluation.items import BenchItem, score_letter


@dataclass
class Answered:
    """What a deployment reports back for one question."""

    answer: str | None
    status: str
    rounds: list[TraceRound]
    summary: dict[str, Any]
    wall_s: float
    prepare_s: float = 0.0
    error: str | None = None
    policy_rounds: int | None = None  # policy calls, when the trace also lists plain reads
    caption_seconds_read: float | None = None  # generation seconds of every caption read
    looked: list[TraceRound] | None = None  # what localization counts, when not get_caption


def make_record(item: BenchItem, got: Answered) -> dict[str, Any]:
    letters = score_letter(got.answer, item.answer, len(item.options))
    summary = got.summary or {}
    roles = summary.get("roles") or {}
    model_seconds = {r: round(float((roles.get(r) or {}).get("model_seconds", 0.0)), 4)
                     for r in ROLES}
    tokens = {r: {"prompt": int((roles.get(r) or {}).get("prompt_tokens", 0)),
                  "completion": int((roles.get(r) or {}).get("completion_tokens", 0))}
              for r in ROLES}
    calls = summary.get("tool_calls") or {}
    record: dict[str, Any] = {
        "qid": item.qid, "video": str(item.video), "question": item.question,
        "options": list(item.options), "task": item.task, "bucket": item.bucket,
        "truth": item.answer, "prediction": got.answer, "correct": letters.correct,
        "lenient": letters.lenient, "missing": letters.missing, "status": got.status,
        "error": got.error,
        "rounds": len(got.rounds) if got.policy_rounds is None else got.policy_rounds,
        "tool_calls": {k: int(calls.get(k, 0)) for k in TOOL_CALL_KINDS},
        "captions_generated": int(summary.get("captions_generated", 0)),
        "captions_cached": int(summary.get("captions_cached", 0)),
        "model_seconds": model_seconds, "tokens": tokens,
        "caption_seconds_read": got.caption_seconds_read,
        "wall_s": round(got.wall_s, 3), "prepare_s": round(got.prepare_s, 3),
        "visited_share": float(summary.get("visited_share", 0.0)),
        "clues": [list(c) for c in item.clues],
        "f1": None, "coverage": None, "precision": None, "repeat": None, "reward": None,
        "trace": [r.to_dict() for r in got.rounds],
        # What the policy was shown first (for the training-data export), when navigated.
        "start": {k: summary[k] for k in ("width", "duration", "high_captions")
                  if k in summary} or None,
    }
    if item.clues:
        got_score = score_rounds(got.answer, got.rounds if got.looked is None else got.looked,
                                 item.answer, item.clues)
        record.update(f1=got_score.f1, coverage=got_score.coverage,
                      precision=got_score.precision, repeat=got_score.repeat,
                      reward=got_score.total)
    return record
