"""Tables. `ai_models` and `training_jobs` are the names the product has always used."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, Text
from sqlmodel import Field, SQLModel

from storage.states import JobStatus
from storage.types import UTCDateTime

SHORT_ID_LENGTH = 8
ID_LENGTH = 32  # hex digits: 128 bits


def new_id() -> str:
    """Random, unguessable ids (128 bits). Humans use the first SHORT_ID_LENGTH characters."""
    return secrets.token_hex(ID_LENGTH // 2)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _optional_time() -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))


def _required_time() -> Any:
    return Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))


class AiModel(SQLModel, table=True):
    __tablename__ = "ai_models"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=ID_LENGTH)
    name: str = Field(max_length=200)
    goal: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    task_type: str | None = Field(default=None, max_length=32)
    dataset_source: str = Field(sa_column=Column(Text, nullable=False))
    target_column: str | None = Field(default=None, max_length=200)
    created_by: str = Field(default="", max_length=100)
    channel_id: str | None = Field(default=None, max_length=50)
    # The Slack workspace (and Enterprise Grid org) the model belongs to; None from the CLI.
    team_id: str | None = Field(default=None, max_length=32, index=True)
    enterprise_id: str | None = Field(default=None, max_length=32)
    deployed_url: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = _required_time()
    updated_at: datetime = _required_time()


class TrainingJob(SQLModel, table=True):
    __tablename__ = "training_jobs"
    # The reads Slack and the API make, each a seek then an ordered walk (bench/reads.py):
    # a channel's or a person's newest jobs in a workspace (`list_jobs`, `count_jobs`; the
    # team second, so a read without one still seeks), and a job by id prefix within a
    # workspace (`find_job`'s range on the id). Each replaces a one-column index (channel_id,
    # team_id) it starts with.
    __table_args__ = (
        Index("ix_training_jobs_channel_team_created", "channel_id", "team_id", "created_at", "id"),
        Index(
            "ix_training_jobs_requester_team_created",
            "requested_by",
            "team_id",
            "created_at",
            "id",
        ),
        Index("ix_training_jobs_team_id_id", "team_id", "id"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=ID_LENGTH)
    model_id: str = Field(foreign_key="ai_models.id", index=True, max_length=ID_LENGTH)
    status: str = Field(default=JobStatus.QUEUED.value, index=True, max_length=32)
    # The stage the job is in, or was in when it stopped (kept after failure).
    stage: str | None = Field(default=None, max_length=32)
    attempt: int = Field(default=1)
    retry_of: str | None = Field(default=None, max_length=32)
    dataset_source: str = Field(sa_column=Column(Text, nullable=False))
    target_column: str | None = Field(default=None, max_length=200)
    task_type: str | None = Field(default=None, max_length=32)
    goal: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    resources: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    requested_by: str = Field(default="", max_length=100)
    channel_id: str | None = Field(default=None, max_length=50)
    # The Slack workspace the job belongs to: Slack sees and acts on its own jobs only.
    team_id: str | None = Field(default=None, max_length=32)
    enterprise_id: str | None = Field(default=None, max_length=32)
    # The worker that holds the job (running it, or serving its local app) and until when its
    # claim holds unless renewed. Every change a worker makes checks it still holds the job.
    worker_id: str | None = Field(default=None, max_length=80, index=True)
    lease_expires_at: datetime | None = _optional_time()
    # How many times a worker has started this job (a takeover after a crash is one more).
    runs: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    expiry_notice_at: datetime | None = _optional_time()
    # Why a queued job still waits although a worker looked (a concurrency limit), for its card.
    wait_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # Where the request came from ("cli", "slack", "api"); only the CLI may name local files.
    origin: str = Field(default="cli", max_length=16)
    # Identifies one submission (e.g. a Slack view and its state) so a retried delivery
    # finds the job it already created instead of creating another.
    request_key: str | None = Field(default=None, max_length=64, unique=True)
    # The status card that follows this job (a Slack channel and message ts). The card's
    # channel is the invoking channel, or the requester's DM when the bot cannot post there.
    card_channel_id: str | None = Field(default=None, max_length=50)
    card_ts: str | None = Field(default=None, max_length=32)
    ttl_seconds: int = Field(default=3600)
    # Seconds of training search the submitter chose (task.json's time_budget_seconds), so a
    # worker in another process runs the job as asked; None: the worker's default.
    time_budget_seconds: int | None = Field(default=None)
    codegen_provider: str | None = Field(default=None, max_length=32)
    sandbox_provider: str | None = Field(default=None, max_length=32)
    sandbox_id: str | None = Field(default=None, max_length=200)
    deployment_url: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    metrics: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    artifacts: dict[str, str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    stage_timings: dict[str, float] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )
    created_at: datetime = _required_time()
    started_at: datetime | None = _optional_time()
    finished_at: datetime | None = _optional_time()
    live_at: datetime | None = _optional_time()
    expires_at: datetime | None = _optional_time()
    updated_at: datetime = _required_time()

    @property
    def short_id(self) -> str:
        return self.id[:SHORT_ID_LENGTH]

    @property
    def job_status(self) -> JobStatus:
        return JobStatus(self.status)


class JobEvent(SQLModel, table=True):
    __tablename__ = "job_events"
    # A job's events in order, without a sort (`list_events`, `events_of_jobs`).
    __table_args__ = (Index("ix_job_events_job_id_id", "job_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(foreign_key="training_jobs.id", max_length=32)
    at: datetime = _required_time()
    kind: str = Field(max_length=20)
    stage: str = Field(max_length=32)
    message: str = Field(sa_column=Column(Text, nullable=False))
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class EventCursor(SQLModel, table=True):
    """How far a follower of `job_events` (the Slack notifier) has got, and which process
    follows it now: one holder at a time, under a lease it renews."""

    __tablename__ = "event_cursors"

    name: str = Field(primary_key=True, max_length=64)
    last_event_id: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, server_default="0")
    )
    holder: str | None = Field(default=None, max_length=80)
    lease_expires_at: datetime | None = _optional_time()
