"""The ``vidnav`` command: ask a question about a local video, evaluate, serve the API, run
workers, migrate the database, create tenants.

A thin layer over the services: it parses arguments, shows progress and results, and turns
errors into one ``error [code] message`` line with exit code 2 (bad input) or 1 (a
dependency failed). ``ask`` goes through the same services as an API client would
(``app.services.local_questions``).
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.panel import Panel
from rich.table import Table

from app.cli_common import Watch, err, fail, guarded, load_settings, out, runtime_for, snippet
from app.cli_eval import eval_app
from app.errors import InvalidInput
from app.services.queue import QUEUES
from app.settings import Settings

if TYPE_CHECKING:
    from app.services.local_questions import AskResult


app = typer.Typer(name="vidnav", help="Answer questions about long videos (LongVideo-R1).",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
tenants_app = typer.Typer(help="Tenants and their API keys.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(tenants_app, name="tenants")
app.add_typer(eval_app, name="eval")


def wait_for_stack(settings: Settings, *, schema: bool) -> None:
    """Full stack: wait (bounded) for Postgres, Redis and, with ``schema``, the migrations;
    containers start in any order. The embedded default needs nothing."""
    from app.services.startup import wait_for_dependencies

    def waiting(problems: list[str]) -> None:
        err.print("waiting: " + "; ".join(problems), highlight=False, markup=False,
                  soft_wrap=True)

    wait_for_dependencies(settings, schema=schema, on_wait=waiting)


# --- showing progress and results --------------------------------------------------------


def render(result: AskResult, question: str, options: list[str]) -> None:
    """The answer, the rounds and where the navigator looked, for a terminal."""
    from app.services.local_questions import step_text

    table = Table(title="Where it looked", show_lines=False, expand=False)
    for name in ("#", "step", "node", "span (s)", "observation"):
        table.add_column(name, overflow="fold")
    for step in result.trace:
        node = ", ".join(str(p) for p in step["node"]) if step["node"] else ""
        span = (f"{step['start']:.1f}–{step['end']:.1f}"
                if step["start"] is not None and step["end"] is not None else "")
        table.add_row(str(step["round"] + 1), step["kind"], f"({node})" if node else "", span,
                      snippet(step_text(step)))
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


# --- ask, eval -------------------------------------------------------------------------------


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
    from app.services.local_questions import ask_local

    started = time.perf_counter()
    options = list(option or [])
    settings = load_settings()
    # Checked before any work: a typo should not cost a migration or an ingest.
    guarded(lambda: question_text(question, normalize_options(options)))

    def run() -> AskResult:
        with runtime_for(settings) as runtime, Watch(not as_json) as watch:
            return ask_local(runtime, video, question, options, max_rounds,
                             on_video=watch.video, on_round=watch.round, started=started)

    result = guarded(run)
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
    else:
        render(result, question, list(normalize_options(options)))
    if result.answer is None:
        raise typer.Exit(3)


# --- serve, worker, db, tenants ----------------------------------------------------------


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="API processes (full stack only).")] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the REST API; on the embedded default its tasks run in this process."""
    import uvicorn

    from app.api.app import create_app

    settings = load_settings()
    if workers > 1 and settings.embedded:
        fail(InvalidInput("several API processes need the full stack (set "
                          "VIDNAV_DATABASE_URL and VIDNAV_REDIS_URL)",
                          code="workers_need_full_stack"))

    def run() -> None:
        if not settings.embedded:
            wait_for_stack(settings, schema=True)
        if workers > 1:
            # Each process reads the settings and builds its own runtime in the app's
            # lifespan (``create_app()`` without a runtime).
            uvicorn.run("app.api.app:create_app", factory=True, host=host, port=port,
                        workers=workers, log_level=log_level)
            return
        with runtime_for(settings) as runtime:
            if settings.embedded:
                err.print(f"embedded default: SQLite under {settings.data_dir}, tasks in "
                          "process", highlight=False)
            uvicorn.run(create_app(runtime), host=host, port=port, log_level=log_level)

    guarded(run)


@app.command()
def worker(
    queue: Annotated[list[str] | None, typer.Option(
        "--queue", "-Q", help="Queue to consume: ingest, caption or navigate (repeat).")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1,
                                             help="Worker processes.")] = 2,
    log_level: Annotated[str, typer.Option(help="Celery log level.")] = "info",
) -> None:
    """Run a Celery worker of the full stack (needs VIDNAV_REDIS_URL)."""
    settings = load_settings()
    if not settings.redis_url:
        fail(InvalidInput("a worker needs the full stack: set VIDNAV_REDIS_URL (and "
                          "VIDNAV_DATABASE_URL); the embedded default runs tasks inside "
                          "`vidnav serve`", code="worker_needs_redis"))
    queues = queue or list(QUEUES)
    unknown = [q for q in queues if q not in QUEUES]
    if unknown:
        fail(InvalidInput(f"unknown queue(s) {', '.join(unknown)}; choose from "
                          f"{', '.join(QUEUES)}", code="unknown_queue"))
    guarded(lambda: wait_for_stack(settings, schema=True))
    # The worker app lives in the ``workers`` package, which nothing in ``app`` imports:
    # this process becomes ``celery -A workers.celery_app worker`` (after the wait above, so
    # the connections it opened are closed before the exec).
    argv = [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker",
            "-Q", ",".join(queues), "-c", str(concurrency), "--loglevel", log_level]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Apply the Alembic migrations to the configured database."""
    from app.db.migrate import current, upgrade

    settings = load_settings()
    guarded(lambda: wait_for_stack(settings, schema=False))
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

    settings = load_settings()

    def run() -> tuple[uuid.UUID, str]:
        wait_for_stack(settings, schema=True)
        with runtime_for(settings) as runtime, session_scope(runtime.session_factory) as s:
            tenant, key = create_tenant(s, name, rate_limit_per_minute=rate_limit,
                                        upload_quota_bytes=quota_bytes)
            return tenant.id, key

    tenant_id, key = guarded(run)
    err.print(f"tenant {name!r} created ({tenant_id}); its API key (shown once):",
              highlight=False)
    sys.stdout.write(key + "\n")


def main() -> None:
    """Entry point of the ``vidnav`` script."""
    app()


if __name__ == "__main__":
    main()
