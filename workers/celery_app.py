"""The Celery app (Redis broker). Start a worker per queue, each with its own concurrency:

    celery -A workers.celery_app worker -Q ingest -c 2
    celery -A workers.celery_app worker -Q caption -c 4
    celery -A workers.celery_app worker -Q navigate -c 8

Postgres holds the state of every video and job, so no result backend is configured.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.signals import (
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)

from app.settings import Settings, get_settings

QUEUES = ("ingest", "caption", "navigate")
TASK_QUEUES = {
    "vidnav.ingest": "ingest",
    "vidnav.caption": "caption",
    "vidnav.navigate": "navigate",
    "vidnav.webhook": "navigate",
}


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


def make_celery(settings: Settings, *, include_tasks: bool) -> Celery:
    app = Celery("vidnav", include=["workers.tasks"] if include_tasks else [])
    app.conf.update(celery_config(settings))
    return app


celery_app = make_celery(get_settings(), include_tasks=True)
app = celery_app


@worker_init.connect
def _check_broker(**_: Any) -> None:
    if not get_settings().redis_url:
        raise RuntimeError("a vidnav worker needs VIDNAV_REDIS_URL (the Celery broker)")


_keeper: Any = None


@worker_ready.connect
def _start_visibility_keeper(**_: Any) -> None:
    global _keeper
    from workers.visibility import VisibilityKeeper

    settings = get_settings()
    if settings.redis_url:
        _keeper = VisibilityKeeper(settings.redis_url, settings.celery_visibility_timeout_s)
        _keeper.start()


@worker_shutdown.connect
def _stop_visibility_keeper(**_: Any) -> None:
    if _keeper is not None:
        _keeper.stop()


@worker_process_init.connect
def _build_runtime_in_child(**_: Any) -> None:
    # Built after the fork: threads, sockets and connection pools must not cross it.
    from workers.runtime import get_runtime

    # One line per model request would drown the task log.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    get_runtime()


@worker_process_shutdown.connect
def _close_runtime_in_child(**_: Any) -> None:
    from workers.runtime import close_runtime

    close_runtime()
