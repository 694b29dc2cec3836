"""``InlineQueue``: the task queue of the embedded default, running tasks in this process."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from app.bootstrap.tasks import run_task
from app.services.queue import NamedTaskQueue, TaskArg
from app.services.runtime import Runtime

logger = logging.getLogger(__name__)


class InlineQueue(NamedTaskQueue):
    """Runs the task table on a small thread pool in this process.

    Retries follow the Celery tasks (``run_task``): a ``RetryLater`` runs the task again
    after its countdown, failures at most ``task_max_retries`` times, early attempts without
    a limit. The queue needs the runtime it belongs to, which holds it: ``bind`` completes
    it once the runtime exists (``app.bootstrap.build_runtime`` does).
    """

    def __init__(self, *, max_workers: int = 4) -> None:
        self._runtime: Runtime | None = None
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="vidnav-task")
        self._timers: set[threading.Timer] = set()
        self._lock = threading.Lock()
        self._closed = False

    def bind(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def send(self, name: str, args: tuple[TaskArg, ...]) -> None:
        self._submit(name, args, 0)

    def _submit(self, name: str, args: tuple[TaskArg, ...], failures: int) -> None:
        with self._lock:
            if self._closed:
                logger.warning("task %s%r dropped: the queue is closed", name, args)
                return
            self._pool.submit(self._run, name, args, failures)

    def _run(self, name: str, args: tuple[TaskArg, ...], failures: int) -> None:
        if self._runtime is None:
            raise RuntimeError("InlineQueue used before bind(runtime)")
        try:
            retry = run_task(self._runtime, name, args, failures)
        except Exception:
            logger.exception("task %s%r failed", name, args)
            return
        if retry is not None:
            self._later(retry.countdown, name, args, retry.failures)

    def _later(self, delay: float, name: str, args: tuple[TaskArg, ...], failures: int
               ) -> None:
        def fire() -> None:
            with self._lock:
                self._timers.discard(timer)
            self._submit(name, args, failures)

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
