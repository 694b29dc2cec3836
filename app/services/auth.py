"""Bearer API-key authentication: a key maps to one tenant, and every query is scoped by it."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
import weakref
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import ApiKey, Tenant
from app.errors import VidnavError
from app.services.tenants import hash_api_key
from app.singleflight import shared


class Unauthorized(VidnavError):
    code = "unauthorized"
    kind = "unauthorized"


@dataclass(frozen=True, slots=True)
class TenantContext:
    """Who is calling: the tenant and its limits (None: the service-wide default)."""

    tenant_id: uuid.UUID
    name: str
    rate_limit_per_minute: int | None
    upload_quota_bytes: int | None


def parse_bearer(header: str | None) -> str:
    """The key of an ``Authorization: Bearer <key>`` header, or Unauthorized."""
    if not header:
        raise Unauthorized("missing Authorization header (expected 'Bearer <api key>')",
                           code="missing_api_key")
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise Unauthorized("the Authorization header must be 'Bearer <api key>'",
                           code="invalid_authorization")
    return key


def authenticate(session: Session, key: str) -> TenantContext:
    """The tenant owning an unrevoked ``key``, or Unauthorized."""
    row = session.execute(
        select(Tenant.id, Tenant.name, Tenant.rate_limit_per_minute, Tenant.upload_quota_bytes)
        .join(ApiKey, ApiKey.tenant_id == Tenant.id)
        .where(ApiKey.key_hash == hash_api_key(key), ApiKey.revoked_at.is_(None))
    ).first()
    if row is None:
        raise Unauthorized("invalid or revoked API key", code="invalid_api_key")
    return TenantContext(row.id, row.name, row.rate_limit_per_minute, row.upload_quota_bytes)


class Authenticator:
    """Authenticates keys with a short-lived in-process cache, so hot paths skip the database.

    A revoked key keeps working in a process for at most ``ttl_s`` seconds.
    """

    def __init__(self, session_factory: sessionmaker[Session], *, ttl_s: float = 5.0,
                 max_entries: int = 10_000) -> None:
        self._factory = session_factory
        self._ttl = ttl_s
        self._max = max_entries
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, TenantContext]] = {}
        self._pending: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, asyncio.Future[TenantContext]]] = (
            weakref.WeakKeyDictionary())

    async def aauthenticate(self, key: str) -> TenantContext:
        """``self(key)`` from a coroutine, with the database part in a worker thread.

        Lookups of one key on one loop are shared: when an entry expires under load, every
        waiting request would otherwise send its own query at the same moment. An entry in
        the last quarter of its life is refreshed in the background while it is still
        served, so steady traffic never waits for the database; a revoked key still stops
        working within ``ttl_s``, as the refresh then fails and the entry expires."""
        digest = hash_api_key(key)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            if hit[0] - now < self._ttl / 4:
                self._lookup_once(key, digest)
            return hit[1]
        return await asyncio.shield(self._lookup_once(key, digest))

    def _lookup_once(self, key: str, digest: str) -> asyncio.Future[TenantContext]:
        loop = asyncio.get_running_loop()
        return shared(self._pending.setdefault(loop, {}), digest,
                      lambda: loop.run_in_executor(None, self._lookup, key, digest))

    def cached(self, key: str) -> TenantContext | None:
        """The key's tenant if authenticated within the TTL (no I/O: safe on the event loop)."""
        with self._lock:
            hit = self._cache.get(hash_api_key(key))
        return hit[1] if hit is not None and hit[0] > time.monotonic() else None

    def __call__(self, key: str) -> TenantContext:
        digest = hash_api_key(key)
        with self._lock:
            hit = self._cache.get(digest)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        return self._lookup(key, digest)

    def _lookup(self, key: str, digest: str) -> TenantContext:
        """Authenticate in the database and remember the answer for ``ttl_s``."""
        now = time.monotonic()
        try:
            with self._factory() as session:
                context = authenticate(session, key)
        except Unauthorized:
            with self._lock:
                self._cache.pop(digest, None)  # revoked: stop serving the entry at once
            raise
        with self._lock:
            if len(self._cache) >= self._max:
                self._cache.clear()
            self._cache[digest] = (now + self._ttl, context)
        return context
