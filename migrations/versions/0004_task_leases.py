"""Every video and job not in a final state is owned by a task with a lease, so work the
broker lost (a Redis flush, a killed worker, an enqueue that failed after its commit) is
found in Postgres and sent again (``app.services.reconcile``).

``lease_expires_at``: until when the current holder (a queued message, a running task) is
presumed alive; unset means "since the row was written". ``attempts`` on videos counts the
tasks that started working on it (jobs already had it); ``recoveries`` counts how often the
reconciler sent the work again. A pending webhook delivery has a lease too.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("jobs", "videos"):
        op.add_column(table, sa.Column("lease_expires_at", sa.DateTime(timezone=True),
                                       nullable=True))
        op.add_column(table, sa.Column("recoveries", sa.Integer(), nullable=False,
                                       server_default="0"))
    op.add_column("videos", sa.Column("attempts", sa.Integer(), nullable=False,
                                      server_default="0"))
    op.add_column("webhook_deliveries", sa.Column("lease_expires_at",
                                                  sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.drop_column("lease_expires_at")
    with op.batch_alter_table("videos") as batch:
        batch.drop_column("attempts")
        batch.drop_column("recoveries")
        batch.drop_column("lease_expires_at")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("recoveries")
        batch.drop_column("lease_expires_at")
