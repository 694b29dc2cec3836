"""What every ``vidnav`` command shares: the consoles, one-line errors with their exit
codes, the settings and a runtime for one command."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from app.errors import VidnavError, error_line, exit_code
from app.settings import Settings, get_settings

if TYPE_CHECKING:
    from rich.progress import TaskID

    from app.services.local_questions import VideoState
    from app.services.runtime import Runtime

SNIPPET = 90
T = TypeVar("T")

err = Console(stderr=True)
out = Console()


def fail(exc: VidnavError) -> NoReturn:
    err.print(error_line(exc), style="bold red", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(exit_code(exc))


def guarded(work: Callable[[], T]) -> T:
    """``work()``, with a vidnav error (a bad setting included) reported as one line."""
    try:
        return work()
    except VidnavError as exc:
        fail(exc)


def load_settings() -> Settings:
    """The environment's settings (a bad value: one line, exit code 2)."""
    return guarded(get_settings)


@contextmanager
def runtime_for(settings: Settings) -> Iterator[Runtime]:
    """A runtime for one command (``app.bootstrap.open_runtime``)."""
    from app.bootstrap import open_runtime

    with open_runtime(settings) as runtime:
        yield runtime


class Watch:
    """Progress on stderr: a bar while the video is prepared, a spinner while navigating."""

    def __init__(self, show: bool) -> None:
        self.progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
            TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
            console=err, disable=not show, transient=False)
        self.preparing: TaskID | None = None
        self.navigating: TaskID | None = None

    def __enter__(self) -> Watch:
        self.progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.progress.stop()

    def video(self, state: VideoState) -> None:
        if self.preparing is None:
            self.preparing = self.progress.add_task("probing and transcribing", total=None)
            self.navigating = None
        if state.status in ("captioning", "ready"):
            self.progress.update(self.preparing, description="captioning",
                                 total=max(state.captions_total, 1),
                                 completed=state.captions_done if state.captions_total else 1)

    def round(self, rounds: int) -> None:
        if self.navigating is None:
            self.navigating = self.progress.add_task("navigating", total=None)
            self.preparing = None
        self.progress.update(self.navigating, description=f"navigating: round {rounds}")


def snippet(text: str | None) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= SNIPPET else text[: SNIPPET - 1] + "…"
