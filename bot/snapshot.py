"""What the Slack surface shows about a job: a plain, immutable picture built from storage."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session

from pipeline.builtin_datasets import BUILTIN_DATASETS
from pipeline.service import SUMMARY_KINDS
from pipeline.training_report import TrainingReport, report_of
from storage import queries, queue
from storage.models import JobEvent, TrainingJob

STAGES: tuple[tuple[str, str], ...] = (
    ("resources", "Reference resources"),
    ("dataset", "Data set"),
    ("codegen", "Code generation"),
    ("train", "Training"),
    ("deploy", "Live app"),
)
STAGE_TITLES: dict[str, str] = dict(STAGES)


@dataclass(frozen=True)
class JobSnapshot:
    job_id: str
    short_id: str
    model_name: str
    status: str  # storage.states.JobStatus value
    stage: str | None  # current stage, or the one it stopped in
    requested_by: str  # Slack user id (or "cli")
    dataset: str  # human description of the source, e.g. "iris (built-in)"
    target: str | None
    task: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    now: datetime  # when the picture was taken; elapsed time is measured against it
    stage_states: dict[str, str] = field(default_factory=dict)  # pending|running|done|failed
    note: str = ""  # the latest progress message
    metrics: dict[str, Any] | None = None
    url: str | None = None
    error: str | None = None
    expires_at: datetime | None = None
    warnings: int = 0
    attempt: int = 1
    # A queued job: how many queued jobs are before it (None: a worker has it, or not queued).
    queue_ahead: int | None = None
    wait_reason: str | None = None  # why a queued job waits although a worker looked
    # Seconds of training search: what the worker granted once training started, before
    # that what the submitter chose (None: the default, not known yet).
    budget_seconds: float | None = None
    report: TrainingReport | None = None  # what its latest training tried and learned

    @property
    def elapsed_seconds(self) -> int:
        if self.started_at is None:
            return 0
        return max(0, int(((self.finished_at or self.now) - self.started_at).total_seconds()))


def describe_source(source: str) -> str:
    """How people see a job's data set: 'iris (built-in)', 'sales.csv (uploaded)', a link."""
    from bot.forms import SLACK_FILE_PREFIX  # forms imports the pipeline; keep this module light

    if source in BUILTIN_DATASETS:
        return f"{source} (built-in)"
    if source.startswith(SLACK_FILE_PREFIX + ":"):
        return f"{source.partition('/')[2] or 'a file'} (uploaded)"
    return source


def build_snapshot(
    job: TrainingJob,
    *,
    model_name: str,
    events: Sequence[JobEvent],
    now: datetime,
    queue_ahead: int | None = None,
) -> JobSnapshot:
    """`events` are the job's events in order (logs may be left out)."""
    states: dict[str, str] = {}
    note = ""
    warnings = 0
    budget: float | None = job.time_budget_seconds
    started_over = 0  # events before this one belong to an earlier run of the job
    for position, event in enumerate(events):
        granted = event.data.get("time_budget_seconds")
        if isinstance(granted, int | float) and not isinstance(granted, bool):
            budget = granted
        if event.data.get("status") == "queued":
            # Handed back to the queue (its worker stopped): it starts again from the start.
            states, note, started_over = {}, "", position
        if event.stage in _STAGE_NAMES:
            if event.kind == "started":
                states[event.stage] = "running"
            elif event.kind == "finished":
                states[event.stage] = "done"
            elif event.kind == "failed":
                states[event.stage] = "failed"
        if event.kind == "progress":
            note = event.message
        elif event.kind == "warning":
            warnings += 1
    if job.status in ("failed", "cancelled", "expired"):
        # A stage that never finished stopped with the job.
        stopped = "failed" if job.status == "failed" else "pending"
        states = {s: (stopped if v == "running" else v) for s, v in states.items()}
        if job.status == "failed" and job.stage and job.stage not in states:
            states[job.stage] = "failed"
    return JobSnapshot(
        job_id=job.id,
        short_id=job.short_id,
        model_name=model_name,
        status=job.status,
        stage=job.stage,
        requested_by=job.requested_by,
        dataset=describe_source(job.dataset_source),
        target=job.target_column,
        task=job.task_type,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        now=now,
        stage_states=states,
        note=note,
        metrics=job.metrics,
        url=job.deployment_url,
        error=job.error,
        expires_at=job.expires_at,
        warnings=warnings,
        attempt=job.attempt,
        queue_ahead=queue_ahead,
        wait_reason=job.wait_reason if job.status == "queued" else None,
        budget_seconds=budget,
        report=report_of(events[started_over:]),
    )


_STAGE_NAMES = set(STAGE_TITLES)


def load_snapshot(session: Session, job: TrainingJob) -> JobSnapshot:
    model = queries.get_model(session, model_id=job.model_id)
    events = queries.list_events(session, job_id=job.id, kinds=SUMMARY_KINDS)
    waiting = job.status == "queued" and job.worker_id is None
    return build_snapshot(
        job,
        model_name=model.name if model else job.short_id,
        events=events,
        now=datetime.now(UTC),
        queue_ahead=queue.queue_position(session, job=job) if waiting else None,
    )
