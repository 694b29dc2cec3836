"""Wait at start-up for what a full-stack process needs: Postgres, Redis, the schema.

Containers start in any order (and some compose runners ignore ``depends_on`` health
conditions), so the API, the workers and the migration job each retry their dependencies
for a bounded time (``VIDNAV_STARTUP_WAIT_S``), then stop with a clear message naming what
is missing, rather than crashing on the first refused connection.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlsplit

import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from app.db.migrate import current, heads
from app.errors import Unavailable
from app.settings import Settings

CONNECT_TIMEOUT_S = 3


def _database_problem(settings: Settings, *, schema: bool) -> str | None:
    where = make_url(settings.sqlalchemy_url)
    postgres = where.get_backend_name() == "postgresql"
    label = (f"Postgres at {where.host}:{where.port or 5432}/{where.database}" if postgres
             else f"the database {where.render_as_string(hide_password=True)}")
    # connect_timeout is libpq's: sqlite3 would refuse it.
    engine = create_engine(settings.sqlalchemy_url,
                           connect_args={"connect_timeout": CONNECT_TIMEOUT_S} if postgres
                           else {})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        orig = getattr(exc, "orig", None)  # the driver's own error says it best
        reason = " ".join(str(orig or exc).split())
        return f"{label} is not answering ({reason})"
    finally:
        engine.dispose()
    if schema:
        revision, wanted = current(settings), heads()
        if revision not in wanted:
            return (f"{label} is at schema revision {revision or 'none'}, not "
                    f"{', '.join(sorted(wanted))}: run `vidnav db upgrade`")
    return None


def _redis_problem(url: str) -> str | None:
    where = urlsplit(url)
    label = f"Redis at {where.hostname or 'localhost'}:{where.port or 6379}"
    client = redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_S,
                                  socket_timeout=CONNECT_TIMEOUT_S)
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"{label} is not answering ({exc})"
    finally:
        client.close()
    return None


def missing_dependencies(settings: Settings, *, schema: bool) -> list[str]:
    """What is not ready yet, one line each; empty when everything answers.

    ``schema``: the database must also be migrated to the code's head revision.
    Nothing is checked on the embedded default (SQLite, in-process tasks)."""
    problems: list[str] = []
    if settings.database_url:
        problem = _database_problem(settings, schema=schema)
        if problem:
            problems.append(problem)
    if settings.redis_url:
        problem = _redis_problem(settings.redis_url)
        if problem:
            problems.append(problem)
    return problems


def wait_for_dependencies(
    settings: Settings, *, schema: bool, on_wait: Callable[[list[str]], None] | None = None,
    clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Return once every dependency answers; retry with backoff (0.5 s doubling to 5 s) for
    up to ``settings.startup_wait_s``, then raise ``Unavailable`` naming what is missing.
    ``on_wait`` hears each unsuccessful check (for a log line)."""
    deadline = clock() + settings.startup_wait_s
    delay = 0.5
    while True:
        problems = missing_dependencies(settings, schema=schema)
        if not problems:
            return
        if clock() + delay > deadline:
            raise Unavailable(
                f"gave up after {settings.startup_wait_s:g} s (VIDNAV_STARTUP_WAIT_S): "
                + "; ".join(problems), code="dependency_unavailable")
        if on_wait is not None:
            on_wait(problems)
        sleep(delay)
        delay = min(delay * 2, 5.0)
