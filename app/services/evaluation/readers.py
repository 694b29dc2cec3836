"""Benchmark files as their publishers distribute them (the fields lmms-eval and the
LongVideo-R1 evaluation code read), turned into ``BenchItem``s.

Each reader takes the annotation file (a JSON list, or JSON lines) and the folder the
videos are in (default: the file's folder); a video is ``<id>.mp4`` unless the row names
its file. Every row is checked before any work: a bad one is an ``InvalidInput`` naming
the row.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from app.core.protocol import normalize_options, question_text
from app.errors import InvalidInput
from app.services.evaluation.items import LETTERS, BenchItem

Row = dict[str, Any]
Reader = Callable[[Row, Path], BenchItem]

_EMBEDDED = re.compile(r"^\s*\(([A-Z])\)\s*(.+?)\s*$")


def load_rows(path: Path) -> list[Row]:
    """The rows of a JSON list or a JSON-lines file."""
    if not path.is_file():
        raise InvalidInput(f"{path} is not a readable file", code="eval_file_not_found")
    text = path.read_text("utf-8")
    try:
        if text.lstrip().startswith("["):
            rows = json.loads(text)
        else:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    except ValueError as exc:
        raise InvalidInput(f"{path}: not JSON or JSON lines ({exc})",
                           code="invalid_eval_item") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise InvalidInput(f"{path}: expected a list of objects", code="invalid_eval_item")
    return rows


def _video(videos: Path, name: str) -> Path:
    path = Path(name)
    if path.is_absolute():
        return path
    return videos / (name if path.suffix else f"{name}.mp4")


def _lettered(texts: Iterable[str]) -> tuple[str, ...]:
    return tuple(f"{LETTERS[i]}. {str(t).strip()}" for i, t in enumerate(texts))


def split_embedded_options(text: str) -> tuple[str, tuple[str, ...]]:
    """LVBench writes its options into the question: ``"Q?\\n(A) x\\n(B) y"``."""
    stem: list[str] = []
    options: list[str] = []
    for line in text.splitlines():
        found = _EMBEDDED.match(line)
        if found and found.group(1) == LETTERS[len(options)]:
            options.append(f"{found.group(1)}. {found.group(2)}")
        elif not options:
            stem.append(line)
    return "\n".join(stem).strip(), tuple(options)


def _lvbench(row: Row, videos: Path) -> BenchItem:
    question, options = split_embedded_options(str(row["question"]))
    kinds = row.get("question_type") or []
    task = ",".join(kinds) if isinstance(kinds, list) else str(kinds)
    key = str(row["key"])
    return BenchItem(qid=str(row.get("uid") or f"{key}:{question[:40]}"),
                     video=_video(videos, key), question=question, options=options,
                     answer=str(row["answer"]).strip(), task=task,
                     bucket=str(row.get("type") or ""))


def _lvbench_rows(rows: list[Row]) -> list[Row]:
    """The released meta file nests questions under each video (``qa``); flatten it."""
    flat: list[Row] = []
    for row in rows:
        if "qa" in row:
            flat.extend({**qa, "key": row["key"], "type": row.get("type")} for qa in row["qa"])
        else:
            flat.append(row)
    return flat


def _videomme(row: Row, videos: Path, *, subtitles: bool) -> BenchItem:
    vid = str(row["videoID"])
    srt = videos / f"{vid}.srt"
    return BenchItem(qid=str(row.get("question_id") or vid), video=_video(videos, vid),
                     question=str(row["question"]), options=tuple(map(str, row["options"])),
                     answer=str(row["answer"]).strip(), task=str(row.get("task_type") or ""),
                     bucket=str(row.get("duration") or ""),
                     subtitles=srt if subtitles and srt.is_file() else None,
                     extra={"domain": str(row.get("domain") or ""),
                            "sub_category": str(row.get("sub_category") or "")})


def _mlvu(row: Row, videos: Path) -> BenchItem:
    name = str(row.get("video_name") or row["video"])
    candidates = [str(c) for c in row.get("candidates") or []]
    answer = str(row["answer"]).strip()
    if candidates:
        if answer not in candidates:
            raise ValueError(f"the answer {answer!r} is not one of the candidates")
        question, options = str(row["question"]), _lettered(candidates)
        answer = LETTERS[candidates.index(answer)]
    else:  # the LongVideo-R1 copy: options in the question, the answer a letter
        question, options = split_embedded_options(str(row["question"]))
    return BenchItem(qid=str(row.get("question_id") or f"{name}:{row['question'][:40]}"),
                     video=_video(videos, name), question=question, options=options,
                     answer=answer, task=str(row.get("question_type") or row.get("task") or ""),
                     bucket=duration_bucket(row.get("duration")))


def _longvideobench(row: Row, videos: Path) -> BenchItem:
    texts = [str(row[f"option{i}"]) for i in range(5)
             if row.get(f"option{i}") not in (None, "", "N/A")]
    name = str(row.get("video_path") or row["video_id"])
    return BenchItem(qid=str(row.get("id") or name), video=_video(videos, name),
                     question=str(row["question"]), options=_lettered(texts),
                     answer=LETTERS[int(row["correct_choice"])],
                     task=str(row.get("question_category") or ""),
                     bucket=str(row.get("duration_group") or ""))


def _cgbench(row: Row, videos: Path) -> BenchItem:
    uid = str(row["video_uid"])
    clues = tuple((float(s), float(e)) for s, e in row.get("clue_intervals") or ())
    return BenchItem(qid=str(row.get("qid") or f"{uid}:{row['question'][:40]}"),
                     video=_video(videos, uid), question=str(row["question"]),
                     options=_lettered(map(str, row["choices"])),
                     answer=str(row["right_answer"]).strip(),
                     task=str(row.get("sub_category") or row.get("domain") or ""),
                     bucket=duration_bucket(row.get("duration")), clues=clues)


def _jsonl(row: Row, videos: Path) -> BenchItem:
    video = Path(str(row["video"]))
    return BenchItem(qid=str(row.get("id") or f"{video.name}:{row['question'][:40]}"),
                     video=video if video.is_absolute() else videos / video,
                     question=str(row["question"]),
                     options=tuple(str(o) for o in row.get("options") or ()),
                     answer=str(row["answer"]), task=str(row.get("type") or ""),
                     bucket=duration_bucket(row.get("duration")),
                     clues=tuple((float(s), float(e)) for s, e in row.get("clues") or ()))


def duration_bucket(seconds: object) -> str:
    """Short (< 4 min), medium (4-20 min), long (> 20 min): Video-MME's groups."""
    if seconds is None or seconds == "":
        return ""
    value = float(str(seconds))
    return "short" if value < 240 else "medium" if value <= 1200 else "long"


READERS: dict[str, Reader] = {
    "lvbench": _lvbench,
    "videomme": lambda row, videos: _videomme(row, videos, subtitles=False),
    "videomme-subs": lambda row, videos: _videomme(row, videos, subtitles=True),
    "mlvu": _mlvu,
    "longvideobench": _longvideobench,
    "cgbench": _cgbench,
    "jsonl": _jsonl,
}
BENCHMARKS = tuple(READERS)


def read_benchmark(kind: str, path: Path, videos: Path | None = None) -> list[BenchItem]:
    """Every question of a benchmark file, checked (question and options) before any work."""
    if kind not in READERS:
        raise InvalidInput(f"unknown benchmark {kind!r}; one of {', '.join(BENCHMARKS)}",
                           code="unknown_benchmark")
    reader = READERS[kind]
    folder = videos if videos is not None else path.parent
    rows = load_rows(path)
    if kind == "lvbench":
        rows = _lvbench_rows(rows)
    items: list[BenchItem] = []
    for number, row in enumerate(rows, start=1):
        try:
            item = reader(row, folder)
            question_text(item.question, normalize_options(item.options))
        except (ValueError, KeyError, TypeError, IndexError, InvalidInput) as exc:
            raise InvalidInput(f"{path}: row {number} is not a {kind} question ({exc})",
                               code="invalid_eval_item") from None
        items.append(item)
    if not items:
        raise InvalidInput(f"{path} has no questions", code="invalid_eval_item")
    return items
