"""Recovery fixtures: the worker tests' stack (real Celery worker processes on Postgres and
Redis, a scripted model server) and an audit of jobs reaching a final state."""

from __future__ import annotations

import collections
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text

from tests.integration.workers.conftest import make_stack  # noqa: F401 - a fixture

FINISHED = "('succeeded', 'no_answer', 'failed', 'cancelled')"


class FinishAudit:
    """Counts, per job, the transitions of its row into a final status, whoever wrote them:
    a Postgres trigger records each one, so a job run twice to completion shows twice."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        with engine.begin() as conn:
            conn.execute(text(
                "CREATE TABLE IF NOT EXISTS test_job_finishes (job_id uuid, status text)"))
            conn.execute(text("TRUNCATE test_job_finishes"))
            conn.execute(text("""
                CREATE OR REPLACE FUNCTION test_record_finish() RETURNS trigger
                LANGUAGE plpgsql AS $$
                BEGIN
                    INSERT INTO test_job_finishes VALUES (NEW.id, NEW.status);
                    RETURN NULL;
                END $$"""))
            conn.execute(text(f"""
                CREATE OR REPLACE TRIGGER test_jobs_finish AFTER UPDATE ON jobs FOR EACH ROW
                WHEN (NEW.status IN {FINISHED} AND OLD.status NOT IN {FINISHED})
                EXECUTE FUNCTION test_record_finish()"""))

    def counts(self) -> collections.Counter[uuid.UUID]:
        with self.engine.connect() as conn:
            rows = conn.execute(text("SELECT job_id FROM test_job_finishes")).scalars()
            return collections.Counter(rows)

    def run_twice(self, job_ids: list[uuid.UUID]) -> int:
        """Completions beyond the first, over ``job_ids`` (asserting each finished once)."""
        counts = self.counts()
        return sum(max(0, counts[j] - 1) for j in job_ids)

    def remove(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(text("DROP TRIGGER IF EXISTS test_jobs_finish ON jobs"))
            conn.execute(text("DROP FUNCTION IF EXISTS test_record_finish()"))
            conn.execute(text("DROP TABLE IF EXISTS test_job_finishes"))


@pytest.fixture
def finish_audit(clean_db: Engine) -> Iterator[FinishAudit]:
    audit = FinishAudit(clean_db)
    yield audit
    audit.remove()
