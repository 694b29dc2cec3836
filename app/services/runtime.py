"""What every service call receives: the long-lived resources of one process (``Runtime``).

A runtime is built once per process by the composition root, ``app.bootstrap``, from the
settings alone: by the FastAPI lifespan, by each Celery worker process and by the CLI.
This module only says what a runtime holds; which adapters fill it is decided there.

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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import redis
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.core.tree import TreeConfig
from app.models.factory import LazyModels
from app.services.cache import CaptionCache
from app.services.events import EventBus
from app.services.queue import TaskQueue
from app.settings import Settings

if TYPE_CHECKING:
    from app.core.ports import Policy
    from app.models.base import Captioner, FrameQA

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
        """Cancel what still runs on the loop (work nobody waits for any more, such as a
        caption another caller abandoned), then stop and close it."""
        if self.loop.is_closed():
            return
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                self.submit(_cancel_pending()).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.loop.close()


async def _cancel_pending() -> None:
    current = asyncio.current_task()
    pending = [task for task in asyncio.all_tasks() if task is not current]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Runtime:
    """Settings, database, Redis, queue, events, caption cache and models of one process.

    Immutable: what a process runs with is decided once, by ``app.bootstrap``. The model
    roles are built on first use (an API process of the full stack never calls a model).
    """

    settings: Settings
    tree_config: TreeConfig
    engine: Engine
    session_factory: sessionmaker[Session]
    redis: redis.Redis | None
    queue: TaskQueue
    events: EventBus
    caption_cache: CaptionCache
    models: LazyModels
    background: BackgroundLoop
    _closed: threading.Event = field(default_factory=threading.Event, init=False, repr=False,
                                     compare=False)

    @property
    def policy(self) -> Policy:
        return self.models.get().policy

    @property
    def captioner(self) -> Captioner:
        return self.models.get().captioner

    @property
    def frame_qa(self) -> FrameQA:
        return self.models.get().frame_qa

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run a coroutine on this runtime's loop from synchronous code and return its result."""
        return self.background.run(coro, timeout)

    def close(self) -> None:
        """Release everything this runtime opened; safe to call twice."""
        if self._closed.is_set():
            return
        self._closed.set()
        self.queue.close()
        # Closing must not hide the error that brought the process down.
        with contextlib.suppress(Exception):
            self.background.run(self.models.aclose(), timeout=10)
        with contextlib.suppress(Exception):
            self.background.run(self.caption_cache.aclose(), timeout=10)
        self.background.stop()
        self.events.close()
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
