"""Jobs announce their changes: a NOTIFY on channel ``vidnav_job_changed`` (Postgres only).

Each update or delete of a ``jobs`` row sends the job's id on commit, whatever wrote it
(API, workers, a cascade, an operator's SQL), so API processes can keep job bodies in
memory and drop one the moment its row changes. SQLite (the embedded default) has one
process and no such cache, so nothing is created there.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHANNEL = "vidnav_job_changed"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"""
        CREATE FUNCTION vidnav_notify_job_changed() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', OLD.id::text);
            RETURN NULL;
        END
        $$
    """)
    op.execute("""
        CREATE TRIGGER jobs_notify_update AFTER UPDATE ON jobs
        FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*)
        EXECUTE FUNCTION vidnav_notify_job_changed()
    """)
    op.execute("""
        CREATE TRIGGER jobs_notify_delete AFTER DELETE ON jobs
        FOR EACH ROW EXECUTE FUNCTION vidnav_notify_job_changed()
    """)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS jobs_notify_delete ON jobs")
    op.execute("DROP TRIGGER IF EXISTS jobs_notify_update ON jobs")
    op.execute("DROP FUNCTION IF EXISTS vidnav_notify_job_changed()")
