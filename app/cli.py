"""The ``vidnav`` command: ask a question about a local video, serve the API, run workers,
migrate the database, create tenants.

Every command goes through the same services as the API: ``ask`` registers the file for
a local tenant, ingests and captions it on the runtime's task queue, creates a job and
waits for it, exactly as an API client would.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from app.errors import InvalidInput, NotFound, VidnavError
from app.settings import Settings, get_settings

if TYPE_CHECKING:
    from app.services.runtime import Runtime

LOCAL_TENANT = "local"
POLL_S = 0.2
SNIPPET = 90
USER_ERRORS = ("invalid", "not_found", "conflict", "too_large", "unsupported")  # exit code 2

app = typer.Typer(name="vidnav", help="Answer questions about long videos (LongVideo-R1).",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
tenants_app = typer.Typer(help="Tenants and their API keys.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(tenants_app, name="tenants")

err = Console(stderr=True)
out = Console()


def load_settings() -> Settings:
    """The environment's settings; with the CPU captioner and no explicit caption mode,
    caption the whole tree at ingest: CPU captions are cheap, and a question then only
    reads stored captions."""
    settings = get_settings()
    if "caption_mode" not in settings.model_fields_set and "captioner" in settings.cpu_roles:
        settings = settings.model_copy(update={"caption_mode": "eager"})
    return settings


def fail(exc: VidnavError) -> NoReturn:
    err.print(f"error [{exc.code}] {exc.message}", style="bold red", markup=False,
              highlight=False, soft_wrap=True)
    raise typer.Exit(2 if exc.kind in USER_ERRORS else 1)


@contextmanager
def runtime_for(settings: Settings) -> Iterator[Runtime]:
    """A migrated database (the embedded default migrates itself) and a runtime."""
    from app.db.migrate import upgrade
    from app.services.runtime import build_runtime

    if settings.embedded:
        upgrade(settings)
    runtime = build_runtime(settings)
    try:
        yield runtime
    finally:
        runtime.close()


# --- ask -------------------------------------------------------------------------------


@dataclass
class AskResult:
    """What ``vidnav ask`` reports: the job's outcome, its rounds and where time went."""

    video_id: str
    job_id: str
    status: str
    answer: str | None
    rounds: int
    trace: list[dict[str, Any]]
    timings: dict[str, float]
    summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "answer": self.answer, "status": self.status, "rounds": self.rounds,
            "trace": self.trace, "timings": self.timings, "summary": self.summary,
            "video_id": self.video_id, "job_id": self.job_id, "error": self.error,
        }


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def local_tenant_id(runtime: Runtime) -> uuid.UUID:
    """The tenant ``ask`` works for, created on first use."""
    from app.db.session import session_scope
    from app.services.tenants import create_tenant, get_tenant_by_name

    with session_scope(runtime.session_factory) as session:
        try:
            return get_tenant_by_name(session, LOCAL_TENANT).id
        except NotFound:
            tenant, _key = create_tenant(session, LOCAL_TENANT)
            return tenant.id


def register_local_video(runtime: Runtime, tenant_id: uuid.UUID, path: Path) -> uuid.UUID:
    """Register a local file as the tenant's video (the same bytes again: the same video).

    The file is hard-linked into the data directory when it can be (no copy of a large
    file), copied otherwise; the services then own that entry like any upload.
    """
    from app.db.session import session_scope
    from app.services.videos import ReceivedUpload, register_upload

    if not path.is_file():
        raise InvalidInput(f"{path} is not a readable file", code="video_not_found")
    settings = runtime.settings
    uploads = settings.data_dir / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    staged = uploads / f"{uuid.uuid4().hex}{path.suffix.lower()}"
    try:
        os.link(path, staged)
    except OSError:
        shutil.copyfile(path, staged)
    upload = ReceivedUpload(path=staged, size=staged.stat().st_size, sha256=file_sha256(staged),
                            filename=path.name)
    undo: list[Callable[[], None]] = []
    try:
        with session_scope(runtime.session_factory) as session:
            video, _created = register_upload(
                session, tenant_id, upload, settings=settings, tree_config=runtime.tree_config,
                caption_mode=settings.caption_mode, on_rollback=undo.append,
            )
            return video.id
    except BaseException:
        for step in undo:
            step()
        raise
    finally:
        upload.discard()


def _video_state(runtime: Runtime, video_id: uuid.UUID
                 ) -> tuple[str, int, int, tuple[str | None, str | None]]:
    from app.db.models import Video
    from app.db.session import session_scope

    with session_scope(runtime.session_factory) as session:
        video = session.get(Video, video_id)
        if video is None:
            raise NotFound("the video was deleted while it was being prepared",
                           code="video_not_found")
        return (video.status, video.captions_done, video.captions_total,
                (video.error_code, video.error))


class StallGuard:
    """Raises when a watched state stops changing for too long: a task that died without
    recording it (or no worker consuming the queue) must not leave the command waiting."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.state: object = None
        self.since = time.monotonic()

    def check(self, state: object, limit_s: float) -> None:
        now = time.monotonic()
        if state != self.state:
            self.state, self.since = state, now
        elif now - self.since > limit_s:
            raise VidnavError(
                f"{self.what} made no progress for {limit_s:.0f} s; is a worker running? "
                "(the embedded default runs tasks in this process; see the log above)",
                code="stalled", kind="unavailable",
            )


def warm_up(runtime: Runtime) -> None:
    """Load the policy's model in the background while the video is prepared."""
    warm = getattr(runtime.policy, "warm", None)
    if callable(warm):
        threading.Thread(target=warm, name="vidnav-warm-up", daemon=True).start()


def prepare_video(runtime: Runtime, video_id: uuid.UUID, *, show: bool) -> dict[str, float]:
    """Ingest and caption the video ahead (its caption mode decides how much), showing
    progress; returns the seconds spent in each phase."""
    status, _done, _total, _error = _video_state(runtime, video_id)
    if status != "ready":
        # Idempotent: a video left half-done by an interrupted run picks up where it was.
        runtime.queue.enqueue_ingest(video_id)
    started = time.perf_counter()
    ingest_s: float | None = None
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                  console=err, disable=not show, transient=False) as progress:
        task = progress.add_task("probing and transcribing", total=None)
        guard = StallGuard("preparing the video")
        settings = runtime.settings
        while True:
            status, done, total, error = _video_state(runtime, video_id)
            if status == "failed":
                code, message = error
                raise VidnavError(f"the video could not be prepared: {message}",
                                  code=code or "video_failed", kind="invalid")
            # Transcribing may take long without a visible change; one caption may not.
            guard.check((status, done), settings.ffmpeg_timeout_s * 10 + 60
                        if status in ("uploaded", "ingesting") else settings.caption_wait_s)
            if status in ("captioning", "ready") and ingest_s is None:
                ingest_s = time.perf_counter() - started
                progress.update(task, description="captioning", total=max(total, 1))
            if status in ("captioning", "ready"):
                progress.update(task, completed=done if total else 1)
            if status == "ready":
                break
            time.sleep(POLL_S)
    total_s = time.perf_counter() - started
    ingest_s = total_s if ingest_s is None else ingest_s
    return {"ingest_s": round(ingest_s, 3), "captioning_s": round(total_s - ingest_s, 3)}


def run_question(runtime: Runtime, tenant_id: uuid.UUID, video_id: uuid.UUID, question: str,
                 options: list[str], max_rounds: int | None, *, show: bool
                 ) -> tuple[uuid.UUID, float]:
    """Create the job, hand it to the queue and wait until it finishes."""
    from app.db.models import Job
    from app.db.session import session_scope
    from app.services.jobs import QuestionInput, create_job
    from app.services.navigation import FINISHED

    with session_scope(runtime.session_factory) as session:
        job, _created = create_job(
            session, tenant_id, video_id,
            QuestionInput(question=question, options=tuple(options) or None,
                          budgets={"max_rounds": max_rounds} if max_rounds else None),
            runtime.settings,
        )
        job_id = job.id
    started = time.perf_counter()
    runtime.queue.enqueue_navigate(job_id)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=err, disable=not show) as progress:
        task = progress.add_task("navigating", total=None)
        guard = StallGuard("the question")
        settings = runtime.settings
        round_limit = settings.caption_wait_s + settings.model_timeout_s * (
            settings.model_retries + 1)
        while True:
            with session_scope(runtime.session_factory) as session:
                row = session.get(Job, job_id)
                status, rounds = (row.status, row.progress_round) if row else ("failed", 0)
            guard.check((status, rounds), round_limit)
            progress.update(task, description=f"navigating: round {rounds}")
            if status in FINISHED:
                break
            time.sleep(POLL_S)
    return job_id, time.perf_counter() - started


def collect_result(runtime: Runtime, video_id: uuid.UUID, job_id: uuid.UUID,
                   timings: dict[str, float]) -> AskResult:
    """The finished job and its trace steps, as ``ask`` reports them."""
    from app.db.models import Job
    from app.db.session import session_scope
    from app.services.jobs import trace_steps

    with session_scope(runtime.session_factory) as session:
        job = session.get(Job, job_id)
        if job is None:
            raise NotFound("the job disappeared", code="job_not_found")
        steps = [
            {
                "round": step.round_index, "kind": step.kind,
                "node": list(step.payload.get("node") or []) or None,
                "start": step.start_s, "end": step.end_s,
                "query": step.payload.get("query"),
                "think": step.payload.get("think"),
                "observation": step.payload.get("observation"),
            }
            for step in trace_steps(session, job_id)
        ]
        summary = dict(job.summary or {})  # the trace summary, outcome and stop reason
        return AskResult(
            video_id=str(video_id), job_id=str(job_id), status=job.status, answer=job.answer,
            rounds=len(steps), trace=steps, timings=timings, summary=summary,
            error=job.error,
        )


_OBSERVATION_PREFIX = re.compile(
    r"^(?:(?:Medium|Low)-level Caption from tool get_caption\(\([\d,]+\)\)\. "
    r"From [\d.]+ to [\d.]+:)?(?:This clip runs from [\d.]+s to [\d.]+s\. )?"
)


def _snippet(text: str | None) -> str:
    text = " ".join((text or "").split())
    text = _OBSERVATION_PREFIX.sub("", text.removeprefix("<information>")
                                   .removesuffix("</information>"))
    return text if len(text) <= SNIPPET else text[: SNIPPET - 1] + "…"


def render(result: AskResult, question: str, options: list[str]) -> None:
    """The answer, the rounds and where the navigator looked, for a terminal."""
    table = Table(title="Where it looked", show_lines=False, expand=False)
    for name in ("#", "step", "node", "span (s)", "observation"):
        table.add_column(name, overflow="fold")
    for step in result.trace:
        node = ", ".join(str(p) for p in step["node"]) if step["node"] else ""
        span = (f"{step['start']:.1f}–{step['end']:.1f}"
                if step["start"] is not None and step["end"] is not None else "")
        table.add_row(str(step["round"] + 1), step["kind"], f"({node})" if node else "", span,
                      _snippet(step["observation"]))
    out.print(table)
    body = result.answer if result.answer is not None else (
        f"no answer ({result.status}{': ' + result.error if result.error else ''})")
    for text in options:
        if result.answer and text.startswith(f"{result.answer.strip()}. "):
            body = text
    out.print(Panel(body, title=f"[bold]{question}", expand=False), highlight=False)
    share = result.summary.get("visited_share")
    looked = f"; looked at {share:.0%} of the video" if isinstance(share, int | float) else ""
    timing = ", ".join(f"{k.removesuffix('_s')} {v:.1f}s" for k, v in result.timings.items())
    out.print(f"{result.rounds} rounds{looked}; {timing}", highlight=False)


@app.command()
def ask(
    video: Annotated[Path, typer.Argument(help="A local video file.")],
    question: Annotated[str, typer.Argument(help="The question to answer.")],
    option: Annotated[list[str] | None, typer.Option(
        "--option", "-o", help="A multiple-choice option (repeat for each).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    max_rounds: Annotated[int | None, typer.Option(min=1, max=200,
                                                   help="Round budget.")] = None,
) -> None:
    """Answer QUESTION about VIDEO and show where in the video the answer came from."""
    from app.core.protocol import normalize_options, question_text

    settings = load_settings()
    started = time.perf_counter()
    try:
        # Checked before any work: a typo should not cost an ingest.
        question_text(question, normalize_options(option or []))
        with runtime_for(settings) as runtime:
            tenant_id = local_tenant_id(runtime)
            video_id = register_local_video(runtime, tenant_id, video)
            warm_up(runtime)
            timings = prepare_video(runtime, video_id, show=not as_json)
            job_id, seconds = run_question(runtime, tenant_id, video_id, question,
                                           list(option or []), max_rounds, show=not as_json)
            timings["question_s"] = round(seconds, 3)
            timings["total_s"] = round(time.perf_counter() - started, 3)
            result = collect_result(runtime, video_id, job_id, timings)
    except VidnavError as exc:
        fail(exc)
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
    else:
        render(result, question, list(normalize_options(option or [])))
    if result.answer is None:
        raise typer.Exit(3)


# --- eval ----------------------------------------------------------------------------------


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
    ``[[start, end], ...]`` seconds)."""
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
    return items


@app.command("eval")
def evaluate(
    items_file: Annotated[Path, typer.Argument(help="Evaluation items (JSON lines).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    max_rounds: Annotated[int | None, typer.Option(min=1, max=200,
                                                   help="Round budget.")] = None,
) -> None:
    """Ask every question of ITEMS_FILE and score answers and localization.

    The score is LongVideo-R1's reward: answer + localization F1 - 0.2 x repeats.
    """
    from app.core.protocol import normalize_options, question_text
    from app.core.scoring import score

    settings = load_settings()
    rows: list[dict[str, Any]] = []
    try:
        items = read_eval_file(items_file)
        for item in items:
            question_text(item.question, normalize_options(item.options))
        with runtime_for(settings) as runtime:
            tenant_id = local_tenant_id(runtime)
            for item in items:
                video_id = register_local_video(runtime, tenant_id, item.video)
                warm_up(runtime)
                prepare_video(runtime, video_id, show=not as_json)
                job_id, seconds = run_question(runtime, tenant_id, video_id, item.question,
                                               list(item.options), max_rounds, show=not as_json)
                result = collect_result(runtime, video_id, job_id, {})
                visited = [(tuple(s["node"]), (s["start"], s["end"])) for s in result.trace
                           if s["kind"] == "get_caption" and s["node"] and s["start"] is not None]
                got = score(predicted=result.answer, truth=item.answer, visited=visited,
                            clues=item.clues)
                rows.append({"video": str(item.video), "question": item.question,
                             "truth": item.answer, "answer": result.answer,
                             "rounds": result.rounds, "seconds": round(seconds, 3),
                             "score": got.total, "correct": bool(got.answer),
                             "f1": got.f1, "repeat": got.repeat})
    except VidnavError as exc:
        fail(exc)
    summary = {
        "items": len(rows), "accuracy": sum(r["correct"] for r in rows) / len(rows),
        "mean_score": sum(r["score"] for r in rows) / len(rows),
        "mean_rounds": sum(r["rounds"] for r in rows) / len(rows),
        "mean_seconds": sum(r["seconds"] for r in rows) / len(rows),
    }
    if as_json:
        sys.stdout.write(json.dumps({"summary": summary, "items": rows}) + "\n")
        return
    table = Table(title="Evaluation")
    for name in ("question", "truth", "answer", "rounds", "F1", "score"):
        table.add_column(name, overflow="fold")
    for r in rows:
        table.add_row(_snippet(r["question"]), r["truth"], _snippet(r["answer"]),
                      str(r["rounds"]), f"{r['f1']:.2f}", f"{r['score']:.2f}")
    out.print(table)
    out.print(f"accuracy {summary['accuracy']:.1%}, mean score {summary['mean_score']:.2f}, "
              f"mean rounds {summary['mean_rounds']:.1f}, mean {summary['mean_seconds']:.1f} s "
              "per question", highlight=False)


# --- serve, worker, db, tenants ----------------------------------------------------------


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port.")] = 8000,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the REST API; on the embedded default its tasks run in this process."""
    import uvicorn

    from app.api.app import create_app

    settings = load_settings()
    try:
        with runtime_for(settings) as runtime:
            if settings.embedded:
                err.print(f"embedded default: SQLite under {settings.data_dir}, tasks in "
                          "process", highlight=False)
            uvicorn.run(create_app(runtime), host=host, port=port, log_level=log_level)
    except VidnavError as exc:
        fail(exc)


@app.command()
def worker(
    queue: Annotated[list[str] | None, typer.Option(
        "--queue", "-Q", help="Queue to consume: ingest, caption or navigate (repeat).")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1,
                                             help="Worker processes.")] = 2,
    log_level: Annotated[str, typer.Option(help="Celery log level.")] = "info",
) -> None:
    """Run a Celery worker of the full stack (needs VIDNAV_REDIS_URL)."""
    settings = get_settings()
    if not settings.redis_url:
        fail(InvalidInput("a worker needs the full stack: set VIDNAV_REDIS_URL (and "
                          "VIDNAV_DATABASE_URL); the embedded default runs tasks inside "
                          "`vidnav serve`", code="worker_needs_redis"))
    from workers.celery_app import QUEUES, celery_app

    queues = queue or list(QUEUES)
    unknown = [q for q in queues if q not in QUEUES]
    if unknown:
        fail(InvalidInput(f"unknown queue(s) {', '.join(unknown)}; choose from "
                          f"{', '.join(QUEUES)}", code="unknown_queue"))
    celery_app.worker_main(["worker", "-Q", ",".join(queues), "-c", str(concurrency),
                            "--loglevel", log_level])


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Apply the Alembic migrations to the configured database."""
    from app.db.migrate import current, upgrade

    settings = get_settings()
    upgrade(settings, revision)
    out.print(f"database at revision {current(settings)} ({_where(settings)})",
              highlight=False)


def _where(settings: Settings) -> str:
    if settings.database_url is None:
        return f"SQLite {settings.data_dir / 'vidnav.db'}"
    return settings.sqlalchemy_url.split("@")[-1]  # no credentials on screen


@tenants_app.command("create")
def tenants_create(
    name: Annotated[str, typer.Argument(help="Tenant name (unique).")],
    rate_limit: Annotated[int | None, typer.Option(min=1, help="Requests per minute.")] = None,
    quota_bytes: Annotated[int | None, typer.Option(min=1, help="Upload quota.")] = None,
) -> None:
    """Create a tenant and print its first API key (shown once, stored hashed)."""
    from app.db.session import session_scope
    from app.services.tenants import create_tenant

    settings = get_settings()
    try:
        with runtime_for(settings) as runtime, session_scope(runtime.session_factory) as s:
            tenant, key = create_tenant(s, name, rate_limit_per_minute=rate_limit,
                                        upload_quota_bytes=quota_bytes)
            tenant_id = tenant.id
    except VidnavError as exc:
        fail(exc)
    err.print(f"tenant {name!r} created ({tenant_id}); its API key (shown once):",
              highlight=False)
    sys.stdout.write(key + "\n")


def main() -> None:
    """Entry point of the ``vidnav`` script."""
    app()


if __name__ == "__main__":
    main()
