"""workspaces, worker leases, expiry notices and event cursors

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

from storage.types import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _text(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    with op.batch_alter_table("ai_models", schema=None) as batch_op:
        batch_op.add_column(sa.Column("team_id", _text(32), nullable=True))
        batch_op.add_column(sa.Column("enterprise_id", _text(32), nullable=True))
        batch_op.create_index("ix_ai_models_team_id", ["team_id"])
    with op.batch_alter_table("training_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("team_id", _text(32), nullable=True))
        batch_op.add_column(sa.Column("enterprise_id", _text(32), nullable=True))
        batch_op.add_column(sa.Column("worker_id", _text(80), nullable=True))
        batch_op.add_column(sa.Column("lease_expires_at", UTCDateTime(), nullable=True))
        # Jobs from before this revision each ran at most once.
        batch_op.add_column(sa.Column("runs", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("expiry_notice_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("wait_reason", sa.Text(), nullable=True))
        batch_op.create_index("ix_training_jobs_team_id", ["team_id"])
        batch_op.create_index("ix_training_jobs_worker_id", ["worker_id"])
    op.create_table(
        "event_cursors",
        sa.Column("name", _text(64), primary_key=True),
        sa.Column("last_event_id", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("holder", _text(80), nullable=True),
        sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("event_cursors")
    with op.batch_alter_table("training_jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_training_jobs_worker_id")
        batch_op.drop_index("ix_training_jobs_team_id")
        for name in (
            "wait_reason",
            "expiry_notice_at",
            "runs",
            "lease_expires_at",
            "worker_id",
            "enterprise_id",
            "team_id",
        ):
            batch_op.drop_column(name)
    with op.batch_alter_table("ai_models", schema=None) as batch_op:
        batch_op.drop_index("ix_ai_models_team_id")
        batch_op.drop_column("enterprise_id")
        batch_op.drop_column("team_id")
