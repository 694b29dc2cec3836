"""The composition root: the one place that builds a process's ``Runtime``, from its
``Settings`` and nothing else (nothing here reads the environment).

Every entry point goes through ``build_runtime`` (or ``open_runtime``): the API's lifespan
(``app.api.app.create_app``), each Celery worker process (``workers/runtime.py``) and the
CLI. With ``VIDNAV_DATABASE_URL`` / ``VIDNAV_REDIS_URL`` set it wires the full stack
(Postgres, the Celery queue, the Redis caption cache and event bus); without them the
embedded default (SQLite, the in-process queue, cache and events).

- ``tasks.py``: the task table (task name -> service function) and one attempt's retry rule,
  shared by the Celery tasks (``workers/tasks.py``) and the in-process queue;
- ``inline_queue.py``: the in-process queue; ``celery_queue.py``: the Celery one and the
  Celery configuration the workers use too.

Work a process starts beside its runtime (a reconciler that re-enqueues what the broker
lost, say) belongs in ``open_runtime``, which every long-running entry point uses, and in
the worker's start-up (``workers/celery_app.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis

from app.db.session import make_engine, make_session_factory
from app.models.factory import LazyModels
from app.services.cache import CaptionCache, MemoryCaptionCache, RedisCaptionCache
from app.services.events import EventBus, InProcessEventBus, RedisEventBus
from app.services.queue import TaskQueue
from app.services.reconcile import Reconciler
from app.services.runtime import BackgroundLoop, Runtime, tree_config
from app.settings import Settings

__all__ = ["build_runtime", "open_runtime"]


def build_runtime(settings: Settings, *, queue: TaskQueue | None = None) -> Runtime:
    """Wire the full stack or the embedded default from ``settings`` (see module doc).

    ``queue``: send tasks there instead (tests record what a process enqueues)."""
    engine = make_engine(settings)
    client: redis.Redis | None = None
    cache: CaptionCache
    events: EventBus
    if settings.redis_url:
        client = redis.Redis.from_url(settings.redis_url, health_check_interval=30)
        cache = RedisCaptionCache(settings.redis_url)
        events = RedisEventBus(settings.redis_url)
    else:
        cache = MemoryCaptionCache()
        events = InProcessEventBus()
    inline = None
    if queue is None:
        if settings.redis_url:
            from app.bootstrap.celery_queue import CeleryQueue

            queue = CeleryQueue(settings)
        else:
            from app.bootstrap.inline_queue import InlineQueue

            queue = inline = InlineQueue()
    runtime = Runtime(
        settings=settings, tree_config=tree_config(settings), engine=engine,
        session_factory=make_session_factory(engine), redis=client, queue=queue,
        events=events, caption_cache=cache, models=LazyModels(settings),
        background=BackgroundLoop(),
    )
    if inline is not None:
        inline.bind(runtime)
    return runtime


@contextmanager
def open_runtime(settings: Settings, *, migrate_embedded: bool = True,
                 reconcile: bool = False) -> Iterator[Runtime]:
    """A runtime for the life of a command or server, closed on exit. The embedded
    default's SQLite database migrates itself first (the full stack's is migrated by
    ``vidnav db upgrade``).

    ``reconcile`` (a server, not a one-shot command): run the reconciler beside it
    (``app.services.reconcile``); in the embedded default its first pass resumes the jobs
    and videos the previous process left queued or running."""
    if migrate_embedded and settings.embedded:
        from app.db.migrate import upgrade

        upgrade(settings)
    runtime = build_runtime(settings)
    reconciler = None
    try:
        if reconcile and settings.reconcile_interval_s > 0:
            reconciler = Reconciler(settings, runtime.session_factory, runtime.queue,
                                    resume_first=settings.embedded).start()
        yield runtime
    finally:
        if reconciler is not None:
            reconciler.stop()
        runtime.close()
