"""The rate limiter on real Redis: several processes' limiters share one limit exactly enough."""

from __future__ import annotations

import asyncio
import uuid

from app.services.ratelimit import RateLimiter, lease_size
from tests.integration.conftest import TEST_REDIS_URL


async def test_limiters_sharing_redis_never_exceed_the_limit(redis_client):  # type: ignore[no-untyped-def]
    tenant, limit = uuid.uuid4(), 200
    assert lease_size(limit) == 4
    # Three API processes: two on the event loop, one from threads.
    # An hour-long window: the test never straddles two windows in practice.
    processes = [RateLimiter(redis_client, url=TEST_REDIS_URL, window_s=3600) for _ in range(3)]
    allowed = 0
    for i in range(450):
        limiter = processes[i % 3]
        decision = (limiter.hit(tenant, limit) if i % 3 == 2
                    else await limiter.ahit(tenant, limit))
        allowed += decision.allowed
        assert decision.limit == limit and 0 <= decision.remaining <= limit
    # Never more than the limit; at most one and a half leases per process left unused
    # (the next lease is claimed ahead when one is half used).
    assert limit - 3 * (lease_size(limit) * 3 // 2) <= allowed <= limit
    # Claims go to Redis in leases, not one round trip per request.
    [key] = list(redis_client.scan_iter(f"vidnav:ratelimit:{tenant}:*"))
    assert int(redis_client.get(key)) <= 450 + 3 * 2 * lease_size(limit)
    assert 0 < redis_client.ttl(key) <= 3601
    for limiter in processes[:2]:
        await limiter.aclose()


async def test_small_limits_are_exact(redis_client):  # type: ignore[no-untyped-def]
    tenant = uuid.uuid4()
    a, b = (RateLimiter(redis_client, url=TEST_REDIS_URL, window_s=3600) for _ in range(2))
    results = [(await (a if i % 2 else b).ahit(tenant, 5)).allowed for i in range(8)]
    assert results == [True] * 5 + [False] * 3
    await a.aclose()
    await b.aclose()


async def test_a_half_used_lease_claims_the_next_ahead(redis_client):  # type: ignore[no-untyped-def]
    tenant, limit = uuid.uuid4(), 50_000
    size = lease_size(limit)
    assert size == 1000
    limiter = RateLimiter(redis_client, url=TEST_REDIS_URL, window_s=3600)
    for _ in range(size // 2):
        assert (await limiter.ahit(tenant, limit)).allowed
    [key] = list(redis_client.scan_iter(f"vidnav:ratelimit:{tenant}:*"))
    assert int(redis_client.get(key)) == size  # half a lease left: nothing claimed yet
    await limiter.ahit(tenant, limit)
    for _ in range(100):  # the next lease arrives in the background
        if int(redis_client.get(key)) == 2 * size:
            break
        await asyncio.sleep(0.01)
    assert int(redis_client.get(key)) == 2 * size
    # The numbers handed out stay consecutive across the two leases.
    decisions = [await limiter.ahit(tenant, limit) for _ in range(size)]
    assert [d.remaining for d in decisions] == list(range(limit - size // 2 - 2,
                                                         limit - size // 2 - 2 - size, -1))
    await limiter.aclose()
