"""``vidnav eval``: run a benchmark through a deployment, report runs.

``vidnav eval run BENCHMARK FILE --out RUN.jsonl`` answers every question (in this process,
or through ``--server URL``), appending one record per question; run it again to resume.
``vidnav eval report RUN... --out DIR`` writes ``report.md`` and ``report.html``.
``vidnav eval ITEMS.jsonl`` is the original scorer of vidnav's own evaluation files.
The logic lives in ``app.services.evaluation``; this module parses and shows.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from typer.core import TyperGroup

from app.cli_common import Watch, err, guarded, load_settings, out, runtime_for, snippet

if TYPE_CHECKING:
    from app.services.evaluation.runs import Deployment


class _DefaultToItems(TyperGroup):
    """``vidnav eval FILE`` (no subcommand) keeps meaning ``vidnav eval items FILE``."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["items", *args]
        return super().resolve_command(ctx, args)


eval_app = typer.Typer(cls=_DefaultToItems, no_args_is_help=True,
                       help="Evaluate: run benchmarks through a deployment, report runs.")


@eval_app.command("run")
def run(
    benchmark: Annotated[str, typer.Argument(
        help="lvbench, videomme, videomme-subs, mlvu, longvideobench, cgbench or jsonl.")],
    annotations: Annotated[Path, typer.Argument(help="The benchmark's question file.")],
    run_file: Annotated[Path, typer.Option("--out", "-o", help="The run (JSON lines); "
                                           "an existing run is resumed.")],
    videos: Annotated[Path | None, typer.Option(
        help="The videos' folder (default: the question file's).")] = None,
    server: Annotated[str | None, typer.Option(
        help="A running vidnav API (e.g. http://127.0.0.1:8000); default: in this process.")
    ] = None,
    api_key: Annotated[str | None, typer.Option(envvar="VIDNAV_API_KEY",
                                                help="The API key for --server.")] = None,
    strategy: Annotated[str, typer.Option(
        help="navigate (LongVideo-R1), flat or uniform (baselines).")] = "navigate",
    concurrency: Annotated[int, typer.Option(min=1, max=64,
                                             help="Questions in flight at once.")] = 2,
    max_rounds: Annotated[int | None, typer.Option(min=1, max=200,
                                                   help="Round budget.")] = None,
    label: Annotated[str, typer.Option(help="The run's name in reports.")] = "",
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N questions.")
                     ] = None,
    leaves: Annotated[int, typer.Option(min=1, max=512,
                                        help="Leaves the uniform baseline asks about.")] = 8,
    preset: Annotated[str, typer.Option(
        help="Caption preset in process: paper (the captions behind the paper's table) or "
             "demo. A server uses its own.")] = "paper",
) -> None:
    """Answer every question of a benchmark and append one scored record per question."""
    from app.services.evaluation.readers import read_benchmark
    from app.services.evaluation.runs import RunMeta, run_benchmark
    from app.settings import load_settings as settings_with

    load_settings()  # a bad environment: one line, before anything else
    settings = guarded(lambda: settings_with(caption_preset=preset))
    items = guarded(lambda: read_benchmark(benchmark, annotations, videos))[:limit]
    meta = RunMeta(benchmark=benchmark, deployment=server or "in-process", strategy=strategy,
                   preset=settings.caption_preset if server is None else "the server's",
                   max_rounds=max_rounds, label=label or run_file.stem)

    def go(deployment: Deployment) -> int:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                      console=err) as bar:
            task = bar.add_task(f"{benchmark}: 0 correct", total=len(items))
            correct = 0

            def on_record(record: dict[str, Any], done: int, total: int) -> None:
                nonlocal correct
                correct += bool(record["correct"])
                bar.update(task, completed=done, total=total,
                           description=f"{benchmark}: {correct} correct")

            return run_benchmark(items, deployment, run_file, meta, concurrency=concurrency,
                                 on_record=on_record)

    def work() -> int:
        from app.errors import InvalidInput
        from app.services.evaluation.baselines import STRATEGIES, BaselineDeployment

        if strategy not in STRATEGIES:
            raise InvalidInput(f"unknown strategy {strategy!r}; one of {', '.join(STRATEGIES)}",
                               code="unknown_strategy")
        if server is not None and strategy != "navigate":
            raise InvalidInput("the baselines run in process only (no --server)",
                               code="unknown_strategy")
        if server is not None:
            from app.services.evaluation.http import HttpDeployment

            remote = HttpDeployment(server, api_key)
            try:
                return go(remote)
            finally:
                remote.close()
        from app.services.evaluation.local import LocalDeployment

        with runtime_for(settings) as runtime:
            local = LocalDeployment(runtime)
            return go(local if strategy == "navigate" else
                      BaselineDeployment(local, strategy, leaves=leaves))

    answered = guarded(work)
    out.print(f"{answered} questions answered now; the run is {run_file}", highlight=False)


@eval_app.command("report")
def report(
    runs: Annotated[list[Path], typer.Argument(help="Run files (JSON lines).")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Where report.md and "
                                          "report.html go.")] = Path("eval-report"),
) -> None:
    """Markdown and a self-contained HTML page of one or more runs, side by side."""
    from app.services.evaluation.page import write_report

    md, page = guarded(lambda: write_report(runs, out_dir))
    out.print(f"{md}\n{page}", highlight=False)


@eval_app.command("items", hidden=True)
def items(
    items_file: Annotated[Path, typer.Argument(help="Evaluation items (JSON lines).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    max_rounds: Annotated[int | None, typer.Option(min=1, max=200,
                                                   help="Round budget.")] = None,
) -> None:
    """Ask every question of ITEMS_FILE and score answers and localization.

    The score is LongVideo-R1's reward: answer + localization F1 - 0.2 x repeats.
    """
    from app.services.eval_jsonl import evaluate_items, read_eval_file

    settings = load_settings()
    rows = guarded(lambda: read_eval_file(items_file))

    def work() -> dict[str, Any]:
        with runtime_for(settings) as runtime, Watch(not as_json) as watch:
            return evaluate_items(runtime, rows, max_rounds, on_video=watch.video,
                                  on_round=watch.round)

    result = guarded(work)
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
        return
    table = Table(title="Evaluation")
    for name in ("question", "truth", "answer", "rounds", "F1", "score"):
        table.add_column(name, overflow="fold")
    for r in result["items"]:
        table.add_row(snippet(r["question"]), r["truth"], snippet(r["answer"]),
                      str(r["rounds"]), f"{r['f1']:.2f}", f"{r['score']:.2f}")
    out.print(table)
    summary = result["summary"]
    out.print(f"accuracy {summary['accuracy']:.1%}, mean score {summary['mean_score']:.2f}, "
              f"mean rounds {summary['mean_rounds']:.1f}, mean {summary['mean_seconds']:.1f} s "
              "per question", highlight=False)


@eval_app.command("export")
def export(
    runs: Annotated[list[Path], typer.Argument(help="Run files (JSON lines).")],
    sft: Annotated[Path | None, typer.Option(help="Write SFT conversations here.")] = None,
    rl: Annotated[Path | None, typer.Option(help="Write RL records here.")] = None,
    keep_all: Annotated[bool, typer.Option(
        "--all", help="SFT: keep wrong and unanswered navigations too.")] = False,
) -> None:
    """Training data from runs: SFT conversations in the policy's format, RL records with
    the reward's parts."""
    from app.errors import InvalidInput
    from app.services.evaluation.export import rl_records, sft_records
    from app.services.evaluation.page import load_runs

    def work() -> list[str]:
        if sft is None and rl is None:
            raise InvalidInput("name --sft, --rl or both", code="nothing_to_export")
        records = [r for _meta, rows in load_runs(runs) for r in rows]
        written = []
        for path, rows in ((sft, sft_records(records, keep_all=keep_all) if sft else []),
                           (rl, rl_records(records) if rl else [])):
            if path is not None:
                path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n"
                                        for r in rows), "utf-8")
                written.append(f"{path}: {len(rows)} records")
        return written

    for line in guarded(work):
        out.print(line, highlight=False)


@eval_app.command("needle")
def needle(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Where videos/ and "
                                          "cgbench.json go.")],
    filler: Annotated[list[Path], typer.Option(help="Filler videos, played in turn.")],
    length: Annotated[list[float], typer.Option(help="Seconds of each long video.")],
    clips: Annotated[list[Path] | None, typer.Option(
        help="Clip question files (vidnav JSON lines naming each clip).")] = None,
    cards: Annotated[int, typer.Option(min=0, max=64,
                                       help="Title-card clips to generate and hide.")] = 0,
    seed: Annotated[int, typer.Option(help="Where the clips land.")] = 0,
) -> None:
    """Make a CG-Bench-style needle benchmark: clips hidden in long filler videos, their
    questions' clue intervals where they landed."""
    from app.errors import InvalidInput
    from app.services.evaluation.needle import build_needle, card_clips, read_clips

    def work() -> Path:
        files = list(clips or [])
        if cards:
            files.insert(0, card_clips(out_dir / "clips", cards, seed=seed))
        if not files:
            raise InvalidInput("name --clips or --cards", code="invalid_eval_item")
        return build_needle(read_clips(files), filler, out_dir, length, seed=seed)

    out.print(str(guarded(work)), highlight=False)
