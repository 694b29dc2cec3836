"""One operation in flight per key: later callers with the same key share its future."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


def shared(pending: dict[K, asyncio.Future[T]], key: K,
           start: Callable[[], Awaitable[T]]) -> asyncio.Future[T]:
    """The future in ``pending[key]``, or ``start()``'s, kept there until it is done.

    Its outcome is marked retrieved when done, so one nobody awaited (work started ahead
    of need) that failed is not reported as an unhandled error; callers that await it
    still get the exception. Await it through ``asyncio.shield`` so one caller's
    cancellation does not cancel the others'."""
    future = pending.get(key)
    if future is None:
        future = pending[key] = asyncio.ensure_future(start())

        def done(finished: asyncio.Future[T]) -> None:
            pending.pop(key, None)
            if not finished.cancelled():
                finished.exception()

        future.add_done_callback(done)
    return future
