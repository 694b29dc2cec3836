"""The port through which services hand work to the workers: ``TaskQueue``.

Enqueue only after the commit that created the row a task reads. Tasks are named
(``TASK_QUEUES``) and carry only ids, so any adapter can send them: the Celery queue of the
full stack and the in-process queue of the embedded default both live in the composition
root (``app.bootstrap``), which also holds the table of what each task runs.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from app.settings import Settings

# The Celery queues a worker consumes (``vidnav worker -Q``), and each task's queue.
QUEUES = ("ingest", "caption", "navigate")
TASK_QUEUES = {
    "vidnav.ingest": "ingest",
    "vidnav.caption": "caption",
    "vidnav.navigate": "navigate",
    "vidnav.webhook": "navigate",
}

TaskArg = str | list[str] | None
"""What a task message carries: ids as strings, and a caption task's node keys."""


class TaskQueue(Protocol):
    """Where services send work. Implementations: ``app.bootstrap.celery_queue`` and
    ``app.bootstrap.inline_queue`` (or a test's recording queue)."""

    def enqueue_ingest(self, video_id: uuid.UUID) -> None: ...

    def enqueue_caption(self, video_id: uuid.UUID, node_keys: Sequence[str] | None = None) -> None:
        """Caption these nodes (None: what the video's caption mode schedules ahead)."""
        ...

    def enqueue_navigate(self, job_id: uuid.UUID) -> None: ...

    def enqueue_webhook(self, delivery_id: uuid.UUID) -> None: ...

    def close(self) -> None:
        """Stop sending; release connections and threads."""
        ...


class NamedTaskQueue(ABC):
    """The ``enqueue_*`` methods spelled once, over ``send(task name, args)``: an adapter
    only says how a named task with string arguments reaches a worker."""

    @abstractmethod
    def send(self, name: str, args: tuple[TaskArg, ...]) -> None:
        """Deliver one named task to whatever runs it."""

    def enqueue_ingest(self, video_id: uuid.UUID) -> None:
        self.send("vidnav.ingest", (str(video_id),))

    def enqueue_caption(self, video_id: uuid.UUID, node_keys: Sequence[str] | None = None) -> None:
        self.send("vidnav.caption", (str(video_id), None if node_keys is None else list(node_keys)))

    def enqueue_navigate(self, job_id: uuid.UUID) -> None:
        self.send("vidnav.navigate", (str(job_id),))

    def enqueue_webhook(self, delivery_id: uuid.UUID) -> None:
        self.send("vidnav.webhook", (str(delivery_id),))


class RetryLater(Exception):  # noqa: N818 - a signal to the queue, not an error
    """Raised by a service to have its task run again after ``countdown`` seconds.

    ``failure`` says whether the attempt failed (it then counts against the task's retry
    budget) or only came too early (a question on a video still being captioned).
    """

    def __init__(self, reason: str, *, failure: bool, countdown: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.failure = failure
        self.countdown = countdown


def retry_delay(settings: Settings, retry: RetryLater, failures: int) -> float:
    """Seconds before the next attempt: the service's countdown, else exponential backoff."""
    if retry.countdown is not None:
        return retry.countdown
    backoff: float = settings.task_retry_backoff_s * 2**failures
    return min(backoff, settings.task_retry_backoff_max_s)
