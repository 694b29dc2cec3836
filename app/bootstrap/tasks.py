"""The task table: what each named task runs, and one attempt at it with its retry rule.

Both queues run tasks through here: the Celery tasks in ``workers/tasks.py`` and the
in-process queue of the embedded default (``app.bootstrap.inline_queue``). A task message
carries ids as strings (see ``app.services.queue``); the service function gets the
runtime, the parsed ids and whether this is its last attempt.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from app.services.captions import caption_nodes
from app.services.ingest import ingest_video
from app.services.leases import hold
from app.services.navigation import deliver_webhook, navigate_job
from app.services.queue import TASK_QUEUES, RetryLater, TaskArg, retry_delay
from app.services.runtime import Runtime

logger = logging.getLogger(__name__)

# (runtime, the task's id, its other arguments..., final_attempt=...) -> None
ServiceTask = Callable[..., None]

TASKS: dict[str, ServiceTask] = {
    "vidnav.ingest": ingest_video,
    "vidnav.caption": caption_nodes,
    "vidnav.navigate": navigate_job,
    "vidnav.webhook": deliver_webhook,
}
assert TASKS.keys() == TASK_QUEUES.keys()


@dataclass(frozen=True, slots=True)
class Retry:
    """Run the task again after ``countdown`` seconds, with ``failures`` failed attempts."""

    countdown: float
    failures: int


def run_task(runtime: Runtime, name: str, args: tuple[TaskArg, ...], failures: int
             ) -> Retry | None:
    """One attempt at task ``name``: None when it is over (done, or given up after
    ``VIDNAV_TASK_MAX_RETRIES`` failed attempts), else when to try again. An attempt that
    only came too early (``RetryLater(failure=False)``) does not count as a failure.
    Unexpected exceptions propagate (the queue logs them; the task is not retried)."""
    first, *rest = args
    final = failures >= runtime.settings.task_max_retries
    try:
        TASKS[name](runtime, uuid.UUID(str(first)), *rest, final_attempt=final)
    except RetryLater as retry:
        if retry.failure and final:
            logger.error("task %s%r gave up after %d failures: %s", name, args, failures,
                         retry.reason)
            return None
        countdown = retry_delay(runtime.settings, retry, failures)
        # The row stays owned while the retry waits: the reconciler must not resend it.
        hold(runtime, name, uuid.UUID(str(first)), countdown)
        return Retry(countdown, failures + int(retry.failure))
    return None
