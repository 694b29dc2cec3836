"""Per-tenant request rate limits: a fixed one-minute window counted in Redis (or in memory)."""

from __future__ import annotations

import asyncio
import math
import threading
import time
import uuid
import weakref
from dataclasses import dataclass

import redis
import redis.asyncio

from app.errors import VidnavError


@dataclass(frozen=True, slots=True)
class RateLimitDecision:
    allowed: bool
    limit: int
    remaining: int
    reset_s: int  # seconds until the window resets

    def headers(self) -> dict[str, str]:
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_s),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.reset_s)
        return headers


class RateLimited(VidnavError):
    code = "rate_limited"
    kind = "rate_limited"

    def __init__(self, decision: RateLimitDecision) -> None:
        super().__init__(
            f"rate limit of {decision.limit} requests per minute exceeded; "
            f"retry in {decision.reset_s} s",
            details={"limit": decision.limit, "retry_after_s": decision.reset_s},
        )
        self.decision = decision


class RateLimiter:
    """Counts requests per tenant per window; shared across processes when Redis is given.

    ``hit`` is for threads; ``ahit`` for the event loop (an asyncio Redis client per loop,
    made from ``url``), so the API's hot path needs no thread hop.
    """

    def __init__(self, client: redis.Redis | None, *, url: str | None = None,
                 window_s: int = 60) -> None:
        self._redis = client
        self._url = url if client is not None else None
        self._window = window_s
        self._lock = threading.Lock()
        self._counts: dict[tuple[uuid.UUID, int], int] = {}
        self._async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop,
                                                       redis.asyncio.Redis] = (
            weakref.WeakKeyDictionary())

    def _window_now(self) -> tuple[int, int]:
        now = time.time()
        window = int(now // self._window)
        return window, max(1, math.ceil((window + 1) * self._window - now))

    def _key(self, tenant_id: uuid.UUID, window: int) -> str:
        return f"vidnav:ratelimit:{tenant_id}:{window}"

    def _count_in_memory(self, tenant_id: uuid.UUID, window: int) -> int:
        with self._lock:
            if len(self._counts) > 10_000:
                self._counts = {k: v for k, v in self._counts.items() if k[1] == window}
            count = self._counts.get((tenant_id, window), 0) + 1
            self._counts[(tenant_id, window)] = count
        return count

    def hit(self, tenant_id: uuid.UUID, limit: int) -> RateLimitDecision:
        """Count one request and say whether it is allowed."""
        window, reset = self._window_now()
        if self._redis is not None:
            pipe = self._redis.pipeline(transaction=False)
            pipe.incr(self._key(tenant_id, window))
            pipe.expire(self._key(tenant_id, window), self._window + 1)
            count = int(pipe.execute()[0])
        else:
            count = self._count_in_memory(tenant_id, window)
        return RateLimitDecision(count <= limit, limit, max(0, limit - count), reset)

    async def ahit(self, tenant_id: uuid.UUID, limit: int) -> RateLimitDecision:
        """``hit`` from a coroutine."""
        if self._redis is None or self._url is None:
            return self.hit(tenant_id, limit)  # in memory: no I/O to wait for
        loop = asyncio.get_running_loop()
        client = self._async_clients.get(loop)
        if client is None:
            client = redis.asyncio.Redis.from_url(self._url)
            self._async_clients[loop] = client
        window, reset = self._window_now()
        key = self._key(tenant_id, window)
        count = int(await client.incr(key))
        if count == 1:
            # The window's first request sets the expiry: one round trip for all the others.
            await client.expire(key, self._window + 1)
        return RateLimitDecision(count <= limit, limit, max(0, limit - count), reset)

    async def aclose(self) -> None:
        """Close this loop's asyncio client (call from the loop that used it)."""
        client = self._async_clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()


class UploadReservations:
    """Bytes of each tenant's uploads in flight, so concurrent uploads share one quota.

    A Redis hash per tenant (one field per upload) shared by every API process, or a dict
    without Redis. An upload whose process died keeps its field until the tenant has had
    no upload activity for ``ttl_s``.
    """

    def __init__(self, client: redis.Redis | None, *, ttl_s: int = 3600) -> None:
        self._redis = client
        self._ttl = ttl_s
        self._lock = threading.Lock()
        self._memory: dict[uuid.UUID, dict[str, int]] = {}

    @staticmethod
    def _key(tenant_id: uuid.UUID) -> str:
        return f"vidnav:uploads:{tenant_id}"

    def update(self, tenant_id: uuid.UUID, upload_id: str, size: int) -> int:
        """Record this upload's size so far; returns the tenant's other uploads' bytes."""
        if self._redis is not None:
            pipe = self._redis.pipeline(transaction=True)
            pipe.hset(self._key(tenant_id), upload_id, size)
            pipe.expire(self._key(tenant_id), self._ttl)
            pipe.hgetall(self._key(tenant_id))
            entries = pipe.execute()[2]
            return sum(int(v) for k, v in entries.items() if k.decode() != upload_id)
        with self._lock:
            entries = self._memory.setdefault(tenant_id, {})
            entries[upload_id] = size
            return sum(v for k, v in entries.items() if k != upload_id)

    def release(self, tenant_id: uuid.UUID, upload_id: str) -> None:
        """Forget an upload that finished, failed or was stored."""
        if self._redis is not None:
            self._redis.hdel(self._key(tenant_id), upload_id)
            return
        with self._lock:
            entries = self._memory.get(tenant_id)
            if entries is not None:
                entries.pop(upload_id, None)
                if not entries:
                    del self._memory[tenant_id]
