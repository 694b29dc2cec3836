"""Runs: every question of a benchmark through a deployment, a few at a time, one JSON
line appended per finished question.

A run is a JSON-lines file plus ``<run>.meta.json`` (benchmark, deployment, strategy,
caption preset, round budget). Running again into the same file skips the questions it
already holds, so an interrupted run continues where it stopped; a question whose
deployment failed is recorded (``status`` ``"error"``, no prediction) and counted as the
reference counts a missing answer, and asked again by the next run (a server that was
down, a model that timed out); its last record is the one that counts.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from app.errors import InvalidInput, VidnavError
from app.services.evaluation.items import BenchItem
from app.services.evaluation.records import Answered, make_record

OnRecord = Callable[[dict[str, Any], int, int], None]


class Deployment(Protocol):
    """Where questions are answered: in this process or by a running server."""

    def answer(self, item: BenchItem, max_rounds: int | None) -> Answered: ...


@dataclass(frozen=True)
class RunMeta:
    benchmark: str
    deployment: str
    strategy: str = "navigate"
    preset: str = "default"
    max_rounds: int | None = None
    label: str = ""


def meta_path(run: Path) -> Path:
    return run.with_name(run.name + ".meta.json")


def read_records(run: Path) -> list[dict[str, Any]]:
    """The records of a run file, the last one of each question (a question retried after
    an error has two); a torn last line (a crash mid-write) is dropped."""
    if not run.is_file():
        return []
    records: dict[str, dict[str, Any]] = {}
    for line in run.read_text("utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and "qid" in row:
            records.pop(str(row["qid"]), None)
            records[str(row["qid"])] = row
    return list(records.values())


def read_meta(run: Path) -> dict[str, Any]:
    path = meta_path(run)
    if not path.is_file():
        return {"label": run.stem}
    meta: dict[str, Any] = json.loads(path.read_text("utf-8"))
    meta.setdefault("label", run.stem)
    if not meta["label"]:
        meta["label"] = run.stem
    return meta


def repair(run: Path) -> None:
    """Cut a torn last line (a crash mid-write) so the next record starts on its own line."""
    if not run.is_file():
        return
    data = run.read_bytes()
    if data and not data.endswith(b"\n"):
        with run.open("r+b") as fh:
            fh.truncate(data.rfind(b"\n") + 1)


def pending(items: Iterable[BenchItem], run: Path) -> list[BenchItem]:
    """The questions still to ask: never answered, or last ended in a deployment error."""
    done = {str(r["qid"]) for r in read_records(run) if r.get("status") != "error"}
    return [item for item in items if item.qid not in done]


def run_benchmark(items: list[BenchItem], deployment: Deployment, run: Path, meta: RunMeta, *,
                  concurrency: int = 2, on_record: OnRecord | None = None) -> int:
    """Answer the questions ``run`` does not hold yet; returns how many were answered now."""
    qids = [item.qid for item in items]
    if len(set(qids)) != len(qids):
        raise InvalidInput("question ids repeat in the benchmark; a run could not resume",
                           code="invalid_eval_item")
    old = read_meta(run) if meta_path(run).is_file() else None
    if old is not None and (old.get("benchmark"), old.get("strategy")) != (
            meta.benchmark, meta.strategy):
        raise InvalidInput(f"{run} holds a run of another benchmark or strategy",
                           code="run_mismatch")
    run.parent.mkdir(parents=True, exist_ok=True)
    meta_path(run).write_text(json.dumps(asdict(meta), indent=1), "utf-8")
    repair(run)
    todo = pending(items, run)
    total, done = len(items), len(items) - len(todo)
    lock = threading.Lock()

    def one(item: BenchItem) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            got = deployment.answer(item, meta.max_rounds)
        except VidnavError as exc:
            got = Answered(answer=None, status="error", rounds=[], summary={},
                           wall_s=time.perf_counter() - started, error=f"[{exc.code}] {exc}")
        return make_record(item, got)

    pool = ThreadPoolExecutor(max_workers=max(1, concurrency))
    try:
        with run.open("a", encoding="utf-8") as out:
            futures = [pool.submit(one, item) for item in todo]
            for future in as_completed(futures):
                record = future.result()
                with lock:
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
                    out.flush()
                    done += 1
                if on_record is not None:
                    on_record(record, done, total)
    finally:
        # Interrupted (Ctrl-C, a failure): questions not started are dropped, so the run
        # stops after those in flight; the next run asks them.
        pool.shutdown(wait=True, cancel_futures=True)
    return len(todo)
