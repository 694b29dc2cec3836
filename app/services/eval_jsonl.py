"""vidnav's own evaluation format (``vidnav eval ITEMS.jsonl``): read the items, ask each
question about its local video, score the answers with the LongVideo-R1 reward."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core.protocol import normalize_options, question_text
from app.core.scoring import score_rounds
from app.errors import InvalidInput
from app.services.local_questions import AskResult, OnRound, OnVideo, ask_local
from app.services.runtime import Runtime


@dataclass(frozen=True)
class EvalItem:
    """One line of an evaluation file."""

    video: Path
    question: str
    options: tuple[str, ...]
    answer: str
    clues: tuple[tuple[float, float], ...]


def read_eval_file(path: Path) -> list[EvalItem]:
    """JSON lines: ``video`` (a path, relative to the file), ``question``, ``options``
    (optional), ``answer`` (the letter for multiple choice), ``clues`` (optional
    ``[[start, end], ...]`` seconds). Every question is checked before any work."""
    if not path.is_file():
        raise InvalidInput(f"{path} is not a readable file", code="eval_file_not_found")
    items = []
    for number, line in enumerate(path.read_text("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            video = Path(row["video"])
            items.append(EvalItem(
                video=video if video.is_absolute() else path.parent / video,
                question=str(row["question"]),
                options=tuple(str(o) for o in row.get("options") or ()),
                answer=str(row["answer"]),
                clues=tuple((float(s), float(e)) for s, e in row.get("clues") or ()),
            ))
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(f"{path}:{number}: not an evaluation item ({exc})",
                               code="invalid_eval_item") from None
    if not items:
        raise InvalidInput(f"{path} has no evaluation items", code="invalid_eval_item")
    for item in items:
        question_text(item.question, normalize_options(item.options))
    return items


def evaluate_items(runtime: Runtime, items: list[EvalItem], max_rounds: int | None, *,
                   on_video: OnVideo | None = None, on_round: OnRound | None = None
                   ) -> dict[str, Any]:
    """Ask every item and score it: ``{"summary": {...}, "items": [one row per item]}``."""
    rows = [_row(item, ask_local(runtime, item.video, item.question, list(item.options),
                                 max_rounds, on_video=on_video, on_round=on_round))
            for item in items]
    count = len(rows)
    summary = {
        "items": count, "accuracy": sum(r["correct"] for r in rows) / count,
        "mean_score": sum(r["score"] for r in rows) / count,
        "mean_rounds": sum(r["rounds"] for r in rows) / count,
        "mean_seconds": sum(r["seconds"] for r in rows) / count,
    }
    return {"summary": summary, "items": rows}


def _row(item: EvalItem, result: AskResult) -> dict[str, Any]:
    got = score_rounds(result.answer, result.recorded, item.answer, item.clues)
    return {"video": str(item.video), "question": item.question, "truth": item.answer,
            "answer": result.answer, "rounds": result.rounds,
            "seconds": result.timings["question_s"], "score": got.total,
            "correct": bool(got.answer), "f1": got.f1, "repeat": got.repeat}
