"""The Celery configuration and ``CeleryQueue``, the task queue of the full stack.

Both sides of the broker read the configuration from here: processes that only send tasks
(the API, the CLI) and the worker app (``workers/celery_app.py``), so a worker and its
senders cannot disagree about routes or acknowledgements.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from app.services.queue import TASK_QUEUES, NamedTaskQueue, TaskArg
from app.settings import Settings


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery settings shared by workers and by processes that only enqueue."""
    return {
        "broker_url": settings.redis_url,
        "result_backend": None,
        "task_ignore_result": True,
        # A task is acknowledged when it finishes, so a crashed worker's task runs again;
        # prefetch 1 keeps a long caption task from holding queued work hostage.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_routes": {name: {"queue": queue} for name, queue in TASK_QUEUES.items()},
        "task_default_queue": "navigate",
        "task_serializer": "json",
        "accept_content": ["json"],
        "broker_transport_options": {
            "visibility_timeout": settings.celery_visibility_timeout_s,
            # Sweep for the unacknowledged messages of dead workers often enough that one is
            # redelivered soon after its visibility timeout, not many minutes later.
            "unacked_restore_interval": max(1, min(10, int(settings.celery_visibility_timeout_s
                                                           / 4))),
            "unacked_restore_throttle": 1,
        },
        "broker_connection_retry_on_startup": True,
        "worker_send_task_events": False,
    }


def make_celery(settings: Settings, *, include: tuple[str, ...] = ()) -> Celery:
    """A Celery app for ``settings``; ``include``: task modules a worker imports."""
    app = Celery("vidnav", include=list(include))
    app.conf.update(celery_config(settings))
    return app


class CeleryQueue(NamedTaskQueue):
    """Sends tasks by name over the Redis broker; call only after committing the rows they
    read. Its own Celery app without the task modules: a sender needs only names."""

    def __init__(self, settings: Settings) -> None:
        self.app = make_celery(settings)

    def send(self, name: str, args: tuple[TaskArg, ...]) -> None:
        self.app.send_task(name, args=list(args), queue=TASK_QUEUES[name])

    def close(self) -> None:
        self.app.close()
