"""Inserts that skip rows whose unique key is already taken, on Postgres and SQLite alike."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import Insert as PostgresInsert
from sqlalchemy.dialects.sqlite import Insert as SqliteInsert

from app.db.base import Base


def insert_or_skip(model: type[Base], dialect: str, index_elements: Sequence[str]
                   ) -> PostgresInsert | SqliteInsert:
    """``INSERT ... ON CONFLICT (index_elements) DO NOTHING`` into ``model``'s table for
    the ``dialect`` of the connection it runs on (``bind.dialect.name``): a retried or
    duplicated task writes each row once, whoever comes first."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(model).on_conflict_do_nothing(index_elements=list(index_elements))
