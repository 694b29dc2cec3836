"""Thin Celery tasks: each runs its entry of the task table (``app.bootstrap.tasks``) and
turns the answer into a Celery retry.

Every task is idempotent (rows are upserted, finished work is skipped), so a redelivery
after a crash or a duplicate message is harmless.
"""

from __future__ import annotations

from celery import Task

from app.bootstrap.tasks import run_task
from app.services.queue import TaskArg
from workers.celery_app import celery_app
from workers.runtime import get_runtime

# max_retries=None: Celery must not cap retries itself; ``run_task`` bounds failed attempts
# by VIDNAV_TASK_MAX_RETRIES and lets a question wait for its video as long as captioning runs.


def _run(task: Task, args: tuple[TaskArg, ...], failures: int) -> None:
    retry = run_task(get_runtime(), task.name, args, failures)
    if retry is not None:
        raise task.retry(args=task.request.args, kwargs={"failures": retry.failures},
                         countdown=retry.countdown)


@celery_app.task(name="vidnav.ingest", bind=True, max_retries=None)
def ingest(self: Task, video_id: str, failures: int = 0) -> None:
    _run(self, (video_id,), failures)


@celery_app.task(name="vidnav.caption", bind=True, max_retries=None)
def caption(self: Task, video_id: str, node_keys: list[str] | None = None, failures: int = 0
            ) -> None:
    _run(self, (video_id, node_keys), failures)


@celery_app.task(name="vidnav.navigate", bind=True, max_retries=None)
def navigate(self: Task, job_id: str, failures: int = 0) -> None:
    _run(self, (job_id,), failures)


@celery_app.task(name="vidnav.webhook", bind=True, max_retries=None)
def webhook(self: Task, delivery_id: str, failures: int = 0) -> None:
    _run(self, (delivery_id,), failures)
