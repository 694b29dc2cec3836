"""Live job events (each trace round as it happens, then the result) for SSE streams.

Redis pub/sub in the full stack; an in-process bus in the embedded default.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol

import redis
import redis.asyncio

logger = logging.getLogger(__name__)


class EventBus(Protocol):
    def publish(self, job_id: uuid.UUID, event: dict[str, Any]) -> None:
        """Publish one event; events carry ``type`` ("round" | "status" | "result") and data."""
        ...

    def subscribe(
        self, job_id: uuid.UUID
    ) -> AbstractAsyncContextManager[AsyncIterator[dict[str, Any]]]:
        """Subscribe before reading persisted rounds, so nothing falls in between."""
        ...

    def close(self) -> None:
        """Release the bus's connections (the runtime closes it)."""
        ...


class _Subscription:
    """An async iterator over one job's events, fed through a queue (so waiting is cancel-safe)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def __aiter__(self) -> _Subscription:
        return self

    async def __anext__(self) -> dict[str, Any]:
        return await self.queue.get()


_Entry = tuple[asyncio.AbstractEventLoop, _Subscription]


class InProcessEventBus:
    """Events within one process (the embedded default): publishers may be any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: dict[uuid.UUID, set[_Entry]] = {}

    def publish(self, job_id: uuid.UUID, event: dict[str, Any]) -> None:
        with self._lock:
            targets = list(self._subscribers.get(job_id, ()))
        for loop, sub in targets:
            try:
                loop.call_soon_threadsafe(sub.queue.put_nowait, dict(event))
            except RuntimeError:
                continue  # that subscriber's loop has closed; it is leaving anyway

    @asynccontextmanager
    async def subscribe(self, job_id: uuid.UUID) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        entry = (asyncio.get_running_loop(), _Subscription())
        with self._lock:
            self._subscribers.setdefault(job_id, set()).add(entry)
        try:
            yield entry[1]
        finally:
            with self._lock:
                subs = self._subscribers.get(job_id)
                if subs is not None:
                    subs.discard(entry)
                    if not subs:
                        del self._subscribers[job_id]

    def close(self) -> None:
        with self._lock:
            self._subscribers.clear()


def event_channel(job_id: uuid.UUID) -> str:
    return f"vidnav:job:{job_id}:events"


class RedisEventBus:
    """Events across processes over Redis pub/sub: workers publish, API processes subscribe."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._client = redis.Redis.from_url(url)

    def publish(self, job_id: uuid.UUID, event: dict[str, Any]) -> None:
        """Best effort: live events are a convenience (rounds and results are in Postgres,
        where the event stream also reads them), so Redis being away loses no job."""
        try:
            self._client.publish(event_channel(job_id), json.dumps(event, default=str))
        except redis.RedisError as exc:
            logger.warning("event for job %s not published: %s", job_id, exc)

    @asynccontextmanager
    async def subscribe(self, job_id: uuid.UUID) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        # An asyncio client per subscription: asyncio connections belong to one event loop.
        client = redis.asyncio.Redis.from_url(self._url)
        pubsub = client.pubsub()
        sub = _Subscription()
        try:
            await pubsub.subscribe(event_channel(job_id))
            pump = asyncio.create_task(self._pump(pubsub, sub))
            try:
                yield sub
            finally:
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pump
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]
            await client.aclose()

    @staticmethod
    async def _pump(pubsub: redis.asyncio.client.PubSub, sub: _Subscription) -> None:
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
            if message is None or message.get("type") != "message":
                continue
            try:
                event = json.loads(message["data"])
            except (TypeError, ValueError):
                continue  # not ours: every publisher of this channel writes JSON objects
            if isinstance(event, dict):
                sub.queue.put_nowait(event)

    def close(self) -> None:
        self._client.close()
