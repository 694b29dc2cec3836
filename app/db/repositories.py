"""Hot-path reads that skip the ORM and the thread pool: asyncio psycopg on the event loop.

``GET /v1/jobs/{id}`` is what dashboards poll; answering it with one prepared statement on
an autocommit connection, awaited on the loop, avoids the thread handoffs and GIL contention
that dominate under many concurrent pollers. Writes stay on the sync ORM sessions.
"""

from __future__ import annotations

import asyncio
import uuid
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row

from app.errors import Unavailable

JOB_COLUMNS = (
    "id", "video_id", "status", "question", "options", "budgets", "progress_round", "answer",
    "error_code", "error", "summary", "callback_url", "cancel_requested", "created_at",
    "started_at", "finished_at",
)
_JOB_QUERY = f"SELECT {', '.join(JOB_COLUMNS)} FROM jobs WHERE id = %s AND tenant_id = %s"


def postgres_conninfo(database_url: str) -> str:
    """A libpq URL from a SQLAlchemy-style one (drops the ``+driver`` part)."""
    scheme, sep, rest = database_url.partition("://")
    return scheme.split("+", 1)[0] + sep + rest


class _LoopPool:
    """A few autocommit connections owned by one event loop."""

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


class AsyncJobReader:
    """Reads one job row of a tenant on the calling event loop (Postgres only).

    A few connections per loop are enough: each query is one short round trip, and more
    concurrent backends only compete for the same CPUs (8 gave 4x the p99 of 4 in
    bench/api.py on 2 CPUs).
    """

    def __init__(self, database_url: str, *, pool_size: int = 4) -> None:
        self._conninfo = postgres_conninfo(database_url)
        self._size = pool_size
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopPool] = (
            weakref.WeakKeyDictionary())

    def _pool(self) -> _LoopPool:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            pool = self._pools[loop] = _LoopPool(self._conninfo, self._size)
        return pool

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

    async def aclose(self) -> None:
        """Close this loop's connections."""
        pool = self._pools.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.close()
