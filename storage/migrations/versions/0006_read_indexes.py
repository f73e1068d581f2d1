"""indexes for the reads Slack and the status API make

Revision ID: 0006
Revises: 0005

With thousands of jobs, `/train list`, `/train status`, App Home and the status API read a
channel's or a person's newest jobs in a workspace, and a job by id prefix: each is now a
seek and an ordered walk of a composite index instead of a filter over a whole workspace's
jobs and a sort (bench/reads.py measures them). Each composite starts with the column of a
one-column index it replaces, so that index goes.

Plain CREATE INDEX, in the migration's transaction: it blocks writes to the table while it
builds, well under a second at tens of thousands of jobs.
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# name, table, columns: the indexes this revision adds, and the ones they replace.
ADDED = (
    (
        "ix_training_jobs_channel_team_created",
        "training_jobs",
        ["channel_id", "team_id", "created_at", "id"],
    ),
    (
        "ix_training_jobs_requester_team_created",
        "training_jobs",
        ["requested_by", "team_id", "created_at", "id"],
    ),
    ("ix_training_jobs_team_id_id", "training_jobs", ["team_id", "id"]),
    ("ix_job_events_job_id_id", "job_events", ["job_id", "id"]),
)
REPLACED = (
    ("ix_training_jobs_channel_id", "training_jobs", ["channel_id"]),
    ("ix_training_jobs_team_id", "training_jobs", ["team_id"]),
    ("ix_job_events_job_id", "job_events", ["job_id"]),
)


def upgrade() -> None:
    # Not batches: SQLite creates and drops an index in place; a batch would copy the table.
    for name, table, columns in ADDED:
        op.create_index(name, table, columns)
    for name, table, _ in REPLACED:
        op.drop_index(name, table_name=table)


def downgrade() -> None:
    for name, table, columns in REPLACED:
        op.create_index(name, table, columns)
    for name, table, _ in ADDED:
        op.drop_index(name, table_name=table)
