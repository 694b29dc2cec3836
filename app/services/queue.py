"""Where services hand work to the workers. Enqueue only after the commit that created the row.

Implementations: ``workers.queue.CeleryQueue`` (Redis broker) and ``InlineQueue`` below
(the embedded default: the same task functions run in this process).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from app.services.runtime import Runtime
    from app.settings import Settings

logger = logging.getLogger(__name__)


class TaskQueue(Protocol):
    def enqueue_ingest(self, video_id: uuid.UUID) -> None: ...

    def enqueue_caption(self, video_id: uuid.UUID, node_keys: Sequence[str] | None = None) -> None:
        """Caption these nodes (None: what the video's caption mode schedules ahead)."""
        ...

    def enqueue_navigate(self, job_id: uuid.UUID) -> None: ...

    def enqueue_webhook(self, delivery_id: uuid.UUID) -> None: ...


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
    return min(settings.task_retry_backoff_s * 2**failures, settings.task_retry_backoff_max_s)


class InlineQueue:
    """Runs the task functions on a small thread pool in this process (the embedded default).

    Retries follow the Celery tasks: a ``RetryLater`` runs the task again after its
    countdown, failures at most ``max_retries`` times, early attempts without a limit.
    """

    def __init__(self, runtime: Runtime, *, max_workers: int = 4) -> None:
        self.runtime = runtime
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="vidnav-task")
        self._timers: set[threading.Timer] = set()
        self._lock = threading.Lock()
        self._closed = False

    def enqueue_ingest(self, video_id: uuid.UUID) -> None:
        from app.services.ingest import ingest_video

        self._submit("ingest", ingest_video, video_id)

    def enqueue_caption(self, video_id: uuid.UUID, node_keys: Sequence[str] | None = None) -> None:
        from app.services.captions import caption_nodes

        keys = None if node_keys is None else list(node_keys)
        self._submit("caption", caption_nodes, video_id, keys)

    def enqueue_navigate(self, job_id: uuid.UUID) -> None:
        from app.services.navigation import navigate_job

        self._submit("navigate", navigate_job, job_id)

    def enqueue_webhook(self, delivery_id: uuid.UUID) -> None:
        from app.services.navigation import deliver_webhook

        self._submit("webhook", deliver_webhook, delivery_id)

    def _submit(self, name: str, fn: Callable[..., Any], *args: Any, failures: int = 0) -> None:
        with self._lock:
            if self._closed:
                logger.warning("task %s%r dropped: the queue is closed", name, args)
                return
            self._pool.submit(self._run, name, fn, args, failures)

    def _run(self, name: str, fn: Callable[..., Any], args: tuple[Any, ...], failures: int
             ) -> None:
        final = failures >= self.runtime.settings.task_max_retries
        try:
            fn(self.runtime, *args, final_attempt=final)
        except RetryLater as retry:
            if retry.failure and final:
                logger.error("task %s%r gave up: %s", name, args, retry.reason)
                return
            delay = retry_delay(self.runtime.settings, retry, failures)
            self._later(delay, name, fn, args, failures + int(retry.failure))
        except Exception:
            logger.exception("task %s%r failed", name, args)

    def _later(self, delay: float, name: str, fn: Callable[..., Any], args: tuple[Any, ...],
               failures: int) -> None:
        def fire() -> None:
            with self._lock:
                self._timers.discard(timer)
            self._submit(name, fn, *args, failures=failures)

        timer = threading.Timer(delay, fire)
        timer.daemon = True
        with self._lock:
            if self._closed:
                return
            self._timers.add(timer)
        timer.start()

    def close(self) -> None:
        """Stop taking work, drop pending retries and wait for running tasks."""
        with self._lock:
            self._closed = True
            timers, self._timers = list(self._timers), set()
        for timer in timers:
            timer.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)
