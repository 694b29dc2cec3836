"""Keeps the Redis broker from redelivering tasks that are still running.

With acks_late on Redis, a message a worker has taken but not acknowledged is handed to
another worker once ``visibility_timeout`` passes: right for a worker that died, wrong for
one still busy with a long caption task or a countdown retry. The worker's main process
therefore touches the delivery time of every message it holds, every quarter of the
timeout; a killed worker stops touching them and they come back after one timeout.

Neither Celery nor kombu offers this (kombu's Redis transport only restores messages past
their timeout; there is no call that prolongs one still in hand), so the keeper writes the
transport's index of unacknowledged deliveries itself: a sorted set of delivery tags scored
by delivery time, whose name it reads from kombu's Redis channel rather than spelling it.
``tests/integration/workers/test_visibility.py`` checks it against real kombu deliveries.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis
from kombu.transport.redis import Channel

logger = logging.getLogger(__name__)

# kombu's Redis transport: the sorted set of unacknowledged delivery tags, scored by the
# time each was delivered (its default name; vidnav sets no transport option renaming it).
UNACKED_INDEX_KEY: str = Channel.unacked_index_key


def held_delivery_tags() -> list[str]:
    """Delivery tags of the messages this worker process has reserved or is running."""
    from celery.worker import state

    for _ in range(3):
        try:
            requests = list(state.reserved_requests) + list(state.active_requests)
            break
        except RuntimeError:  # the weak set changed while copying; try again
            continue
    else:
        return []
    tags = {str(request.message.delivery_tag) for request in requests}
    return sorted(tags)


class VisibilityKeeper:
    """A daemon thread that keeps this worker's held messages invisible to other workers."""

    def __init__(self, redis_url: str, visibility_timeout_s: float, *,
                 held: Callable[[], list[str]] = held_delivery_tags) -> None:
        """``held``: the delivery tags to keep invisible (this worker's, by default)."""
        self.held = held
        self.client = redis.Redis.from_url(redis_url)
        self.interval = max(0.5, visibility_timeout_s / 4)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="vidnav-visibility",
                                        daemon=True)

    def start(self) -> VisibilityKeeper:
        self._thread.start()
        return self

    def touch(self) -> int:
        """Mark the held messages delivered now; returns how many were touched."""
        tags = self.held()
        if not tags:
            return 0
        now = time.time()
        # XX: only messages still unacknowledged; an acknowledged one must not come back.
        self.client.zadd(UNACKED_INDEX_KEY, dict.fromkeys(tags, now), xx=True)
        return len(tags)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.touch()
            except redis.RedisError as exc:
                logger.warning("could not refresh task visibility: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.client.close()
