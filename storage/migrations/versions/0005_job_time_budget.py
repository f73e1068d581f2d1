"""a job's training time budget

Revision ID: 0005
Revises: 0004

Nullable: jobs from before this revision, and jobs whose submitter chose none, run with the
worker's TRAINBOT_TRAIN_BUDGET_SECONDS.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("training_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("time_budget_seconds", sa.Integer(), nullable=True))


def downgrade() -> None:
    # Not a batch: on SQLite a batch drops a column by copying the table and dropping the
    # old one, which fails while job_events rows reference it (foreign keys are on). SQLite
    # 3.35 and later drop a plain column in place (ALTER TABLE ... DROP COLUMN).
    op.drop_column("training_jobs", "time_budget_seconds")
