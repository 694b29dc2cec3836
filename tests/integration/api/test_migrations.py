"""Alembic builds the whole schema from nothing on Postgres and SQLite, matching the models,
and downgrades back to nothing."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from app.db import migrate
from app.db.base import Base
from app.settings import Settings
from tests.integration.conftest import TEST_DATABASE_URL

TABLES = {"tenants", "api_keys", "videos", "subtitles", "caption_nodes", "jobs", "trace_steps",
          "webhook_deliveries"}


@pytest.fixture
def scratch_postgres() -> Iterator[str]:
    base, _, name = TEST_DATABASE_URL.rpartition("/")
    scratch = f"{name}_migrations_{os.getpid()}"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{scratch}"')
        admin.execute(f'CREATE DATABASE "{scratch}"')
        try:
            yield f"{base}/{scratch}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')


def check_round_trip(settings: Settings) -> None:
    migrate.upgrade(settings)
    assert migrate.current(settings) is not None
    engine = create_engine(settings.sqlalchemy_url)
    try:
        with engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) >= TABLES
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
            assert diff == [], f"models and migrations differ: {diff}"
        migrate.downgrade(settings, "base")
        with engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
        assert migrate.current(settings) is None
        migrate.upgrade(settings)  # and again from nothing, after a full downgrade
        with engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) >= TABLES
    finally:
        engine.dispose()


def test_postgres_upgrade_matches_models_and_downgrades(scratch_postgres: str) -> None:
    check_round_trip(Settings(database_url=scratch_postgres))


def test_sqlite_upgrade_matches_models_and_downgrades(tmp_path: Path) -> None:
    check_round_trip(Settings(data_dir=tmp_path / "embedded"))
