"""The Celery app (Redis broker). Start a worker per queue, each with its own concurrency:

    celery -A workers.celery_app worker -Q ingest -c 2
    celery -A workers.celery_app worker -Q caption -c 4
    celery -A workers.celery_app worker -Q navigate -c 8

Postgres holds the state of every video and job, so no result backend is configured.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import (
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)

from app.bootstrap.celery_queue import CeleryQueue, make_celery
from app.db.session import make_engine, make_session_factory
from app.errors import exit_with
from app.services.reconcile import Reconciler
from app.settings import SettingsError, get_settings
from workers.visibility import VisibilityKeeper

try:
    # Read once, when the worker app is imported: a bad setting stops ``celery -A
    # workers.celery_app worker`` with one ``error [invalid_setting] ...`` line, exit code 2.
    settings = get_settings()
except SettingsError as exc:
    exit_with(exc)

celery_app = make_celery(settings, include=("workers.tasks",))
app = celery_app


@worker_init.connect
def _check_broker(**_: Any) -> None:
    if not settings.redis_url:
        raise RuntimeError("a vidnav worker needs VIDNAV_REDIS_URL (the Celery broker)")


_keeper: VisibilityKeeper | None = None
_reconciler: Reconciler | None = None


@worker_ready.connect
def _start_visibility_keeper(**_: Any) -> None:
    global _keeper, _reconciler
    # Work a worker runs beside its tasks starts here, in the main process.
    if settings.redis_url:
        _keeper = VisibilityKeeper(settings.redis_url, settings.celery_visibility_timeout_s)
        _keeper.start()
        if settings.reconcile_interval_s > 0:
            # Postgres brings back what the broker lost (one pass at a time across workers).
            engine = make_engine(settings)
            _reconciler = Reconciler(settings, make_session_factory(engine),
                                     CeleryQueue(settings)).start()


@worker_shutdown.connect
def _stop_visibility_keeper(**_: Any) -> None:
    if _keeper is not None:
        _keeper.stop()
    if _reconciler is not None:
        _reconciler.stop()


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
