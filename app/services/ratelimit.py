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
from app.singleflight import shared


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


def lease_size(limit: int) -> int:
    """How many request numbers a process claims from Redis at once: 1 for small limits
    (exact), else 2 % of the limit, at most 1000. Under many concurrent requests a lease
    must outlast a Redis round trip (an event-loop turn at full load) several times over,
    or requests queue behind the next claim: 100 did not at 64 connections (bench/api.py)."""
    return max(1, min(1000, limit // 50))


class RateLimiter:
    """Counts requests per tenant per window; shared across processes when Redis is given.

    With Redis, each request gets a number from the window's counter; a process claims
    numbers in small leases (``lease_size``) so most requests need no round trip. Numbers
    are unique across processes, so the limit is never exceeded; a process's unused
    numbers at the window's end (at most one and a half leases, as the next lease is
    claimed when one is half used) can refuse up to 3 % of the limit early. ``hit`` is for threads,
    ``ahit`` for the event loop (an asyncio Redis client per loop, made from ``url``).
    """

    def __init__(self, client: redis.Redis | None, *, url: str | None = None,
                 window_s: int = 60) -> None:
        self._redis = client
        self._url = url if client is not None else None
        self._window = window_s
        self._lock = threading.Lock()
        self._counts: dict[tuple[uuid.UUID, int], int] = {}
        # Claimed, not yet used request numbers: [next, last] ranges per (tenant, window).
        self._leases: dict[tuple[uuid.UUID, int], list[list[int]]] = {}
        self._claims: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[tuple[uuid.UUID, int], asyncio.Future[None]]] = (
            weakref.WeakKeyDictionary())
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

    def _take_leased(self, key: tuple[uuid.UUID, int]) -> int | None:
        with self._lock:
            ranges = self._leases.get(key)
            while ranges:
                first = ranges[0]
                if first[0] <= first[1]:
                    number = first[0]
                    first[0] += 1
                    return number
                ranges.pop(0)
            return None

    def _leased_left(self, key: tuple[uuid.UUID, int]) -> int:
        with self._lock:
            return sum(last - first + 1 for first, last in self._leases.get(key, ()))

    def _add_lease(self, key: tuple[uuid.UUID, int], last: int, size: int) -> None:
        """Keep a claimed range of request numbers, ``last - size + 1 .. last``."""
        with self._lock:
            if len(self._leases) > 10_000:
                self._leases = {k: v for k, v in self._leases.items() if k[1] == key[1]}
            self._leases.setdefault(key, []).append([last - size + 1, last])

    def _decision(self, count: int, limit: int, reset: int) -> RateLimitDecision:
        return RateLimitDecision(count <= limit, limit, max(0, limit - count), reset)

    def hit(self, tenant_id: uuid.UUID, limit: int) -> RateLimitDecision:
        """Count one request and say whether it is allowed."""
        window, reset = self._window_now()
        if self._redis is None:
            return self._decision(self._count_in_memory(tenant_id, window), limit, reset)
        key = (tenant_id, window)
        while (count := self._take_leased(key)) is None:
            size = lease_size(limit)
            pipe = self._redis.pipeline(transaction=False)
            pipe.incrby(self._key(tenant_id, window), size)
            pipe.expire(self._key(tenant_id, window), self._window + 1)
            self._add_lease(key, int(pipe.execute()[0]), size)
        return self._decision(count, limit, reset)

    async def ahit(self, tenant_id: uuid.UUID, limit: int) -> RateLimitDecision:
        """``hit`` from a coroutine. Requests that find no number left wait for one claim
        (per tenant and window on this loop); a lease half used starts the next claim in
        the background, so under steady load requests do not wait for Redis at all."""
        if self._redis is None or self._url is None:
            return self.hit(tenant_id, limit)  # in memory: no I/O to wait for
        window, reset = self._window_now()
        key = (tenant_id, window)
        size = lease_size(limit)
        while (count := self._take_leased(key)) is None:
            await asyncio.shield(self._claim_once(key, size))
        if size > 1 and self._leased_left(key) <= size // 2:
            self._claim_once(key, size)  # claim ahead; its outcome is nobody's to await
        return self._decision(count, limit, reset)

    def _claim_once(self, key: tuple[uuid.UUID, int], size: int) -> asyncio.Future[None]:
        """The claim in flight for ``key`` on this loop, started if there is none."""
        loop = asyncio.get_running_loop()
        return shared(self._claims.setdefault(loop, {}), key,
                      lambda: self._claim(loop, key, size))

    async def _claim(self, loop: asyncio.AbstractEventLoop, key: tuple[uuid.UUID, int],
                     size: int) -> None:
        """Claim ``size`` request numbers from the window's counter in Redis."""
        assert self._url is not None
        client = self._async_clients.get(loop)
        if client is None:
            client = redis.asyncio.Redis.from_url(self._url)
            self._async_clients[loop] = client
        redis_key = self._key(*key)
        last = int(await client.incrby(redis_key, size))
        if last == size:
            # The window's first claim sets the expiry; later claims need one round trip.
            await client.expire(redis_key, self._window + 1)
        self._add_lease(key, last, size)

    async def aclose(self) -> None:
        """Close this loop's asyncio client (call from the loop that used it)."""
        loop = asyncio.get_running_loop()
        claims = list(self._claims.pop(loop, {}).values())
        for claim in claims:
            claim.cancel()
        await asyncio.gather(*claims, return_exceptions=True)
        client = self._async_clients.pop(loop, None)
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
