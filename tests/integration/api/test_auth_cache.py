"""The API's key cache on real Postgres: concurrent misses share one lookup, an entry near
its end is refreshed while still served, and a revoked key stops within the TTL."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import select, update

from app.db.models import ApiKey, utcnow
from app.services.auth import Authenticator, Unauthorized


def counting(authenticator: Authenticator) -> list[str]:
    """Record each database lookup the authenticator makes (it still makes them)."""
    calls: list[str] = []
    lookup = authenticator._lookup

    def spy(key: str, digest: str):  # type: ignore[no-untyped-def]
        calls.append(digest)
        return lookup(key, digest)

    authenticator._lookup = spy  # type: ignore[method-assign]
    return calls


async def test_concurrent_misses_share_one_lookup(runtime, tenant):
    authenticator = Authenticator(runtime.session_factory, ttl_s=60)
    lookups = counting(authenticator)
    results = await asyncio.gather(*(authenticator.aauthenticate(tenant.key) for _ in range(50)))
    assert {r.tenant_id for r in results} == {tenant.id}
    assert len(lookups) == 1
    await authenticator.aauthenticate(tenant.key)
    assert len(lookups) == 1  # a fresh entry needs no lookup


async def test_an_ageing_entry_is_refreshed_while_served(runtime, tenant):
    authenticator = Authenticator(runtime.session_factory, ttl_s=1.0)
    lookups = counting(authenticator)
    await authenticator.aauthenticate(tenant.key)
    await asyncio.sleep(0.8)  # into the last quarter of the entry's life
    started = time.monotonic()
    assert (await authenticator.aauthenticate(tenant.key)).tenant_id == tenant.id
    assert time.monotonic() - started < 0.05  # served at once, not after the lookup
    for _ in range(100):
        if len(lookups) == 2:
            break
        await asyncio.sleep(0.01)
    assert len(lookups) == 2
    await asyncio.sleep(0.5)  # past the first entry's end: the refreshed one serves
    assert authenticator.cached(tenant.key) is not None


async def test_a_revoked_key_stops_within_the_ttl(runtime, tenant):
    ttl = 2.0
    authenticator = Authenticator(runtime.session_factory, ttl_s=ttl)
    started = time.monotonic()
    await authenticator.aauthenticate(tenant.key)
    with runtime.session_factory() as session:
        session.execute(update(ApiKey).where(ApiKey.tenant_id == tenant.id)
                        .values(revoked_at=utcnow()))
        session.commit()
        assert session.scalar(select(ApiKey.revoked_at).where(ApiKey.tenant_id == tenant.id))
    refused_at = None
    while time.monotonic() - started < ttl + 1:
        try:
            await authenticator.aauthenticate(tenant.key)
        except Unauthorized:
            refused_at = time.monotonic() - started
            break
        await asyncio.sleep(0.05)
    assert refused_at is not None and refused_at <= ttl
    # The refresh saw the revocation, so the key is refused before its entry would expire.
    assert refused_at < ttl
    with pytest.raises(Unauthorized):
        await authenticator.aauthenticate(tenant.key)
