"""Integration fixtures: a real Postgres database migrated with Alembic, and real Redis (db 15).

Concurrent test sessions on one machine would share the database and Redis db, so each
session holds a Postgres advisory lock (per database + Redis URL pair) for its whole run;
point ``VIDNAV_TEST_DATABASE_URL`` / ``VIDNAV_TEST_REDIS_URL`` elsewhere to run in parallel.
Tables are truncated and Redis flushed per test (the code under test commits through its
own sessions, so a rolled-back outer transaction would not isolate anything).
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from app.db import migrate
from app.db.base import Base
from app.db.session import make_engine, make_session_factory
from app.settings import Settings

TEST_DATABASE_URL = os.environ.get(
    "VIDNAV_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/vidnav_test"
)
TEST_REDIS_URL = os.environ.get("VIDNAV_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
# One lock per (database, Redis db) pair: runs pointed at other ones do not wait for us.
_LOCK_ID = zlib.crc32(f"{TEST_DATABASE_URL} {TEST_REDIS_URL}".encode())


def _admin_url(url: str) -> tuple[str, str]:
    base, _, name = url.rpartition("/")
    return f"{base}/postgres", name


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """The test database: created if missing, serialised across sessions, migrated to head."""
    admin, name = _admin_url(TEST_DATABASE_URL)
    try:
        admin_conn = psycopg.connect(admin, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"integration tests need Postgres at {admin}: {exc}")
    with admin_conn:
        exists = admin_conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
        if not exists:
            admin_conn.execute(f'CREATE DATABASE "{name}"')
        # Held until the session ends: another engineer's run waits instead of truncating ours.
        admin_conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        settings = Settings(database_url=TEST_DATABASE_URL)
        with psycopg.connect(TEST_DATABASE_URL, autocommit=True) as conn:
            # Start from nothing so a changed migration is always exercised from the first one.
            conn.execute("DROP SCHEMA public CASCADE")
            conn.execute("CREATE SCHEMA public")
        migrate.upgrade(settings)
        try:
            yield TEST_DATABASE_URL
        finally:
            admin_conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))


@pytest.fixture(scope="session")
def engine(pg_url: str) -> Iterator[Engine]:
    engine = make_engine(Settings(database_url=pg_url))
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def session_factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


def truncate_all(engine: Engine) -> None:
    """Empty every vidnav table (one statement, so foreign keys never get in the way)."""
    names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} CASCADE"))


@pytest.fixture
def clean_db(engine: Engine) -> Iterator[Engine]:
    """The engine, with every table emptied before and after the test."""
    truncate_all(engine)
    yield engine
    truncate_all(engine)


@pytest.fixture
def db(clean_db: Engine, session_factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session for arranging and checking rows; commit explicitly when the app must see them."""
    session = session_factory()
    try:
        yield session
    finally:
        session.rollback()
        session.close()


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    """Redis db 15, flushed before and after the test."""
    client = redis.Redis.from_url(TEST_REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"integration tests need Redis at {TEST_REDIS_URL}: {exc}")
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def integration_settings(
    clean_db: Engine, redis_client: redis.Redis, pg_url: str, tmp_path: Path
) -> Settings:
    """Settings for the full stack: the test Postgres, Redis db 15, a fresh data dir."""
    return Settings(database_url=pg_url, redis_url=TEST_REDIS_URL, data_dir=tmp_path / "data")
