"""Per-tenant request rate limits: a fixed one-minute window counted in Redis (or in memory)."""

from __future__ import annotations

import math
import threading
import time
import uuid
from dataclasses import dataclass

import redis

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
    """Counts requests per tenant per window; shared across processes when Redis is given."""

    def __init__(self, client: redis.Redis | None, *, window_s: int = 60) -> None:
        self._redis = client
        self._window = window_s
        self._lock = threading.Lock()
        self._counts: dict[tuple[uuid.UUID, int], int] = {}

    def hit(self, tenant_id: uuid.UUID, limit: int) -> RateLimitDecision:
        """Count one request and say whether it is allowed."""
        now = time.time()
        window = int(now // self._window)
        reset = max(1, math.ceil((window + 1) * self._window - now))
        if self._redis is not None:
            key = f"vidnav:ratelimit:{tenant_id}:{window}"
            pipe = self._redis.pipeline(transaction=False)
            pipe.incr(key)
            pipe.expire(key, self._window + 1)
            count = int(pipe.execute()[0])
        else:
            with self._lock:
                if len(self._counts) > 10_000:
                    self._counts = {k: v for k, v in self._counts.items() if k[1] == window}
                count = self._counts.get((tenant_id, window), 0) + 1
                self._counts[(tenant_id, window)] = count
        return RateLimitDecision(count <= limit, limit, max(0, limit - count), reset)
