"""The long-lived resources of one process, built once and handed to every service call.

``build_runtime`` is called by the FastAPI lifespan, by each Celery worker process (the
``worker_process_init`` signal) and by the CLI. With ``VIDNAV_DATABASE_URL`` /
``VIDNAV_REDIS_URL`` set it wires the full stack (Postgres, Celery queue, Redis cache and
events); without them the embedded default (SQLite, in-process queue, cache and events).

Model clients are asynchronous and bound to one event loop, so the runtime owns one
background loop (``run``): synchronous callers (Celery tasks, the inline queue's threads)
submit coroutines to it instead of starting a loop per call.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import redis
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.core.tree import TreeConfig
from app.db.session import make_engine, make_session_factory
from app.services.cache import CaptionCache, MemoryCaptionCache, RedisCaptionCache
from app.services.events import EventBus
from app.services.queue import TaskQueue
from app.settings import Settings

if TYPE_CHECKING:
    from app.core.ports import Policy
    from app.models.base import Captioner, FrameQA
    from app.models.factory import ModelRoles

T = TypeVar("T")


class BackgroundLoop:
    """An asyncio loop in a daemon thread that synchronous code submits coroutines to."""

    def __init__(self, name: str = "vidnav-runtime-loop") -> None:
        self.loop = asyncio.new_event_loop()
        # Database calls, frame decoding and JPEG encoding all go through to_thread; the
        # default pool (cores + 4 threads) would queue a batch's database calls behind them.
        self.loop.set_default_executor(
            ThreadPoolExecutor(max_workers=32, thread_name_prefix="vidnav-io"))
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for its result (never call from the loop)."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("BackgroundLoop.run called from its own loop; await instead")
        return self.submit(coro).result(timeout)

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.loop.close()


class Runtime:
    """Settings, database, Redis, queue, events, caption cache and models of one process."""

    def __init__(
        self, *, settings: Settings, engine: Engine, session_factory: sessionmaker[Session],
        redis: redis.Redis | None, queue: TaskQueue | None, events: EventBus,
        caption_cache: CaptionCache, models: ModelRoles | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.session_factory = session_factory
        self.redis = redis
        self.events = events
        self.caption_cache = caption_cache
        self._queue = queue
        self._models = models
        self._models_lock = threading.Lock()
        self.background = BackgroundLoop()
        self.tree_config = tree_config(settings)
        self._closed = False

    @property
    def queue(self) -> TaskQueue:
        if self._queue is None:
            raise RuntimeError("this runtime was built without a task queue")
        return self._queue

    @queue.setter
    def queue(self, value: TaskQueue) -> None:
        self._queue = value

    @property
    def models(self) -> ModelRoles:
        """The model roles, built on first use: an API process of the full stack never
        calls a model, so it never pays for building them."""
        if self._models is None:
            with self._models_lock:
                if self._models is None:
                    from app.models.factory import build_models

                    self._models = build_models(self.settings)
        return self._models

    @property
    def policy(self) -> Policy:
        return self.models.policy

    @property
    def captioner(self) -> Captioner:
        return self.models.captioner

    @property
    def frame_qa(self) -> FrameQA:
        return self.models.frame_qa

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run a coroutine on this runtime's loop from synchronous code and return its result."""
        return self.background.run(coro, timeout)

    def close(self) -> None:
        """Release everything this runtime opened; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        close_queue = getattr(self._queue, "close", None)
        if close_queue is not None:
            close_queue()
        # Closing must not hide the error that brought the process down.
        if self._models is not None:
            with contextlib.suppress(Exception):
                self.background.run(self._models.aclose(), timeout=10)
        with contextlib.suppress(Exception):
            self.background.run(self.caption_cache.aclose(), timeout=10)
        self.background.stop()
        close_events = getattr(self.events, "close", None)
        if close_events is not None:
            close_events()
        if self.redis is not None:
            self.redis.close()
        self.engine.dispose()


def tree_config(settings: Settings) -> TreeConfig:
    """The tree parameters of ``settings`` (field names are shared)."""
    return TreeConfig(
        segment_len_s=settings.segment_len_s, min_width=settings.min_width,
        max_width=settings.max_width, high_frames=settings.high_frames,
        medium_frames=settings.medium_frames, low_frames=settings.low_frames,
        videoqa_frames=settings.videoqa_frames, videoqa_max_side=settings.videoqa_max_side,
        high_caption_words=settings.high_caption_words,
        low_caption_words=settings.low_caption_words,
    )


def build_runtime(
    settings: Settings, *, models: ModelRoles | None = None, queue: TaskQueue | None = None,
    events: EventBus | None = None,
) -> Runtime:
    """Wire the full stack or the embedded default from ``settings`` (see module doc)."""
    engine = make_engine(settings)
    session_factory = make_session_factory(engine)
    client: redis.Redis | None = None
    cache: CaptionCache
    if settings.redis_url:
        client = redis.Redis.from_url(settings.redis_url, health_check_interval=30)
        cache = RedisCaptionCache(settings.redis_url)
    else:
        cache = MemoryCaptionCache()
    runtime = Runtime(
        settings=settings, engine=engine, session_factory=session_factory, redis=client,
        queue=queue, events=events if events is not None else _build_events(settings, client),
        caption_cache=cache, models=models,
    )
    if queue is None:
        if settings.redis_url:
            # The composition root may name the worker package; services never do.
            from workers.queue import CeleryQueue

            runtime.queue = CeleryQueue(settings)
        else:
            from app.services.queue import InlineQueue

            runtime.queue = InlineQueue(runtime)
    return runtime


def _build_events(settings: Settings, client: redis.Redis | None) -> EventBus:
    from app.services import events

    if client is not None and settings.redis_url:
        return events.RedisEventBus(settings.redis_url)
    return events.InProcessEventBus()
