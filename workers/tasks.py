"""Thin Celery tasks: parse ids, call the service function, turn ``RetryLater`` into retries.

Every task is idempotent (rows are upserted, finished work is skipped), so a redelivery
after a crash or a duplicate message is harmless.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from celery import Task

from app.services.queue import RetryLater, retry_delay
from workers.celery_app import celery_app
from workers.runtime import get_runtime

logger = logging.getLogger(__name__)


# max_retries=None: Celery must not cap retries itself; ``_run`` bounds failed attempts by
# VIDNAV_TASK_MAX_RETRIES and lets a question wait for its video as long as captioning runs.


def _run(task: Task, fn: Callable[..., Any], args: tuple[Any, ...], failures: int) -> None:
    runtime = get_runtime()
    final = failures >= runtime.settings.task_max_retries
    try:
        fn(runtime, *args, final_attempt=final)
    except RetryLater as retry:
        if retry.failure and final:
            logger.error("%s%r gave up after %d failures: %s", task.name, args, failures,
                         retry.reason)
            return
        countdown = retry_delay(runtime.settings, retry, failures)
        raise task.retry(
            args=task.request.args, kwargs={"failures": failures + int(retry.failure)},
            countdown=countdown,
        ) from None


@celery_app.task(name="vidnav.ingest", bind=True, max_retries=None)
def ingest(self: Task, video_id: str, failures: int = 0) -> None:
    from app.services.ingest import ingest_video

    _run(self, ingest_video, (uuid.UUID(video_id),), failures)


@celery_app.task(name="vidnav.caption", bind=True, max_retries=None)
def caption(self: Task, video_id: str, node_keys: list[str] | None = None, failures: int = 0
            ) -> None:
    from app.services.captions import caption_nodes

    _run(self, caption_nodes, (uuid.UUID(video_id), node_keys), failures)


@celery_app.task(name="vidnav.navigate", bind=True, max_retries=None)
def navigate(self: Task, job_id: str, failures: int = 0) -> None:
    from app.services.navigation import navigate_job

    _run(self, navigate_job, (uuid.UUID(job_id),), failures)


@celery_app.task(name="vidnav.webhook", bind=True, max_retries=None)
def webhook(self: Task, delivery_id: str, failures: int = 0) -> None:
    from app.services.navigation import deliver_webhook

    _run(self, deliver_webhook, (uuid.UUID(delivery_id),), failures)
