"""Hot-path reads that skip the ORM and the thread pool: asyncio psycopg on the event loop.

``GET /v1/jobs/{id}`` is what dashboards poll; answering it with one prepared statement on
an autocommit connection, awaited on the loop, avoids the thread handoffs and GIL contention
that dominate under many concurrent pollers. Writes stay on the sync ORM sessions.

Bodies of jobs read are also kept in memory, per event loop, for as long as Postgres says
nothing changed: migration 0002 makes every update or delete of a job row NOTIFY its id on
commit, and a LISTEN connection drops the entry when the id arrives. A reader that was
already querying when a change arrived does not store its (possibly older) row; while the
LISTEN connection is down nothing is served from memory or stored. So a cached body lags
a committed change by the notification's trip only (well under a millisecond on one host).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

import psycopg
from psycopg.rows import dict_row

from app.errors import Unavailable
from app.singleflight import shared

logger = logging.getLogger(__name__)

# Sent by the triggers of migration 0002 with the job's id as payload.
JOB_CHANGED_CHANNEL = "vidnav_job_changed"

JOB_COLUMNS = (
    "id", "video_id", "status", "question", "options", "budgets", "progress_round", "answer",
    "error_code", "error", "summary", "reference", "callback_url", "cancel_requested", "created_at",
    "started_at", "finished_at",
)
_JOB_QUERY = f"SELECT {', '.join(JOB_COLUMNS)} FROM jobs WHERE id = %s AND tenant_id = %s"


def postgres_conninfo(database_url: str) -> str:
    """A libpq URL from a SQLAlchemy-style one (drops the ``+driver`` part)."""
    scheme, sep, rest = database_url.partition("://")
    return scheme.split("+", 1)[0] + sep + rest


class _LoopPool:
    """A few autocommit connections owned by one event loop.

    Not psycopg_pool's ``AsyncConnectionPool``: measured in bench/api.py with the read
    cache off (every read takes a connection), it cost 0.53 to 0.60 ms of server CPU per
    read against 0.41 to 0.48 ms for this list and semaphore, side by side under the same
    load, even with a semaphore in front so its own waiting queue was never used. Its
    extras (growing and shrinking, health checks, a scheduler task per pool) buy nothing
    for four connections per loop that serve one short query each.
    """

    def __init__(self, conninfo: str, size: int) -> None:
        self.conninfo = conninfo
        self.idle: list[psycopg.AsyncConnection[dict[str, Any]]] = []
        self.slots = asyncio.Semaphore(size)

    async def connect(self) -> psycopg.AsyncConnection[dict[str, Any]]:
        return await psycopg.AsyncConnection.connect(
            self.conninfo, autocommit=True, row_factory=dict_row
        )

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[dict[str, Any]]]:
        async with self.slots:
            conn = self.idle.pop() if self.idle else await self.connect()
            try:
                yield conn
            except BaseException:
                await conn.close()
                raise
            if conn.closed:
                return
            self.idle.append(conn)

    async def close(self) -> None:
        while self.idle:
            await self.idle.pop().close()


class _JobBodies:
    """One event loop's cached job bodies and the LISTEN connection that invalidates them.

    ``seq`` counts changes seen; ``changed[job]`` is the ``seq`` of the job's last change
    and ``floor`` the ``seq`` of the last reset (connection lost, or ``changed`` pruned):
    a body read while either moved past the reader's ``mark()`` is not stored.
    """

    MAX_TRACKED_CHANGES = 50_000

    def __init__(self, conninfo: str, *, max_entries: int, max_age_s: float) -> None:
        self.conninfo = conninfo
        self.max_entries = max_entries
        self.max_age_s = max_age_s
        self.entries: dict[uuid.UUID, tuple[uuid.UUID, bytes, float]] = {}
        self.changed: dict[uuid.UUID, int] = {}
        self.seq = 0
        self.floor = 0
        self.live = False
        self.hits = 0
        self.misses = 0
        self.fetching: dict[tuple[uuid.UUID, uuid.UUID], asyncio.Future[bytes | None]] = {}
        self.task = asyncio.get_running_loop().create_task(self._follow())

    # --- reads ----------------------------------------------------------------------------

    def get(self, tenant_id: uuid.UUID, job_id: uuid.UUID) -> bytes | None:
        entry = self.entries.get(job_id) if self.live else None
        if (entry is None or entry[0] != tenant_id
                or time.monotonic() - entry[2] > self.max_age_s):
            self.misses += 1
            return None
        self.hits += 1
        return entry[1]

    def mark(self) -> int:
        return self.seq

    def put(self, tenant_id: uuid.UUID, job_id: uuid.UUID, body: bytes, mark: int) -> None:
        if not self.live or self.floor > mark or self.changed.get(job_id, 0) > mark:
            return  # the row may have changed while it was being read
        if len(self.entries) >= self.max_entries:
            del self.entries[next(iter(self.entries))]  # the oldest stored
        self.entries[job_id] = (tenant_id, body, time.monotonic())

    # --- invalidation ---------------------------------------------------------------------

    def forget(self, job_id: uuid.UUID) -> None:
        self.seq += 1
        if len(self.changed) >= self.MAX_TRACKED_CHANGES:
            self.changed.clear()
            self.floor = self.seq
        self.changed[job_id] = self.seq
        self.entries.pop(job_id, None)

    def reset(self) -> None:
        self.seq += 1
        self.floor = self.seq
        self.changed.clear()
        self.entries.clear()

    def _on_readable(self, pgconn: Any, lost: asyncio.Future[None]) -> None:
        try:
            pgconn.consume_input()
        except psycopg.OperationalError as exc:
            if not lost.done():
                lost.set_exception(exc)
            return
        while (note := pgconn.notifies()) is not None:
            try:
                self.forget(uuid.UUID(note.extra.decode()))
            except ValueError:
                self.reset()  # not a job id: trust nothing cached
        if pgconn.status != psycopg.pq.ConnStatus.OK and not lost.done():
            lost.set_exception(psycopg.OperationalError("the LISTEN connection broke"))

    async def _follow(self) -> None:
        """Keep a LISTEN connection; the cache is live only while it is up."""
        loop = asyncio.get_running_loop()
        delay = 0.2
        while True:
            conn: psycopg.AsyncConnection[Any] | None = None
            fd: int | None = None
            try:
                conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
                await conn.execute(f"LISTEN {JOB_CHANGED_CHANNEL}")
                lost: asyncio.Future[None] = loop.create_future()
                fd = conn.pgconn.socket
                loop.add_reader(fd, self._on_readable, conn.pgconn, lost)
                self.reset()
                self.live = True
                delay = 0.2
                await lost
            except (psycopg.Error, OSError) as exc:
                logger.warning("job change notifications lost (%s); cached job bodies off "
                               "until they are back", exc)
            finally:
                self.live = False
                self.reset()
                if fd is not None:
                    loop.remove_reader(fd)
                if conn is not None:
                    await conn.close()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def close(self) -> None:
        self.task.cancel()
        with suppress(asyncio.CancelledError):
            await self.task


class AsyncJobReader:
    """Reads one job row of a tenant on the calling event loop (Postgres only).

    A few connections per loop are enough: each query is one short round trip, and more
    concurrent backends only compete for the same CPUs (8 gave 4x the p99 of 4 in
    bench/api.py on 2 CPUs). With ``cache``, ``get_job_body`` keeps rendered bodies in
    memory until the job's row changes (see the module's docstring).
    """

    def __init__(self, database_url: str, *, pool_size: int = 4, cache: bool = True,
                 cache_entries: int = 10_000, cache_max_age_s: float = 30.0) -> None:
        self._conninfo = postgres_conninfo(database_url)
        self._size = pool_size
        self._cache_on = cache
        self._cache_entries = cache_entries
        self._cache_max_age_s = cache_max_age_s
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopPool] = (
            weakref.WeakKeyDictionary())
        self._bodies: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _JobBodies] = (
            weakref.WeakKeyDictionary())

    def _pool(self) -> _LoopPool:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            pool = self._pools[loop] = _LoopPool(self._conninfo, self._size)
        return pool

    def _cache(self) -> _JobBodies | None:
        if not self._cache_on:
            return None
        loop = asyncio.get_running_loop()
        bodies = self._bodies.get(loop)
        if bodies is None:
            bodies = self._bodies[loop] = _JobBodies(
                self._conninfo, max_entries=self._cache_entries,
                max_age_s=self._cache_max_age_s)
        return bodies

    async def get_job(self, tenant_id: uuid.UUID, job_id: uuid.UUID) -> dict[str, Any] | None:
        """The job's public columns, or None when the tenant has no such job."""
        pool = self._pool()
        for attempt in (1, 2):
            try:
                async with pool.connection() as conn:
                    cursor = await conn.execute(_JOB_QUERY, (job_id, tenant_id))
                    return await cursor.fetchone()
            except psycopg.OperationalError as exc:
                # A connection the server dropped (restart, idle timeout): retry on a new one.
                if attempt == 2:
                    raise Unavailable(f"the database is unavailable: {exc}",
                                      code="database_unavailable") from exc
        return None

    async def get_job_body(self, tenant_id: uuid.UUID, job_id: uuid.UUID,
                           render: Callable[[dict[str, Any]], bytes]) -> bytes | None:
        """``render(row)`` of the job, from memory while its row is unchanged; None when
        the tenant has no such job."""
        cache = self._cache()
        if cache is None:
            row = await self.get_job(tenant_id, job_id)
            return None if row is None else render(row)
        body = cache.get(tenant_id, job_id)
        if body is not None:
            return body
        # Misses of one job share one query: when a body is dropped under load, every
        # poller of that job would otherwise queue its own query at the same moment.
        fetch = shared(cache.fetching, (tenant_id, job_id),
                       lambda: self._fetch_body(cache, tenant_id, job_id, render))
        return await asyncio.shield(fetch)

    async def _fetch_body(self, cache: _JobBodies, tenant_id: uuid.UUID, job_id: uuid.UUID,
                          render: Callable[[dict[str, Any]], bytes]) -> bytes | None:
        mark = cache.mark()
        row = await self.get_job(tenant_id, job_id)
        if row is None:
            return None
        body = render(row)
        cache.put(tenant_id, job_id, body, mark)
        return body

    def forget(self, job_id: uuid.UUID | None = None) -> None:
        """Drop one job's body (or all) now, in every loop of this process: for this
        process's own writes, which should not wait for their notification."""
        for bodies in list(self._bodies.values()):
            if job_id is None:
                bodies.reset()
            else:
                bodies.forget(job_id)

    def cache_stats(self) -> dict[str, int | bool]:
        """Hits, misses, entries and whether notifications are live, over all loops."""
        caches = list(self._bodies.values())
        return {"hits": sum(c.hits for c in caches), "misses": sum(c.misses for c in caches),
                "entries": sum(len(c.entries) for c in caches),
                "live": any(c.live for c in caches)}

    async def aclose(self) -> None:
        """Close this loop's connections (and its LISTEN connection)."""
        loop = asyncio.get_running_loop()
        bodies = self._bodies.pop(loop, None)
        if bodies is not None:
            await bodies.close()
        pool = self._pools.pop(loop, None)
        if pool is not None:
            await pool.close()
