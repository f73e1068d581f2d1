"""What the Slack handlers ask for, in one place: handlers parse and ack; this does the work."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from bot.forms import TrainRequest
from bot.notifier import SlackNotifier
from bot.settings import SlackSettings
from bot.snapshot import JobSnapshot, build_snapshot
from pipeline.bootstrap import Services
from storage import queries
from storage.db import session_scope
from storage.models import TrainingJob
from storage.states import IllegalTransition

LOG_LINES_SHOWN = 40
SUMMARY_KINDS = ["started", "finished", "failed", "progress", "warning"]


class ActionRefused(Exception):
    """A command that cannot be done; the message says why, for the person who asked."""


@dataclass
class BotContext:
    services: Services
    slack: SlackSettings
    notifier: SlackNotifier

    @property
    def max_upload_bytes(self) -> int:
        return self.services.settings.max_dataset_mb * 1024 * 1024


def submit_training(ctx: BotContext, request: TrainRequest) -> tuple[TrainingJob, bool]:
    """Records and queues the job; (job, False) when this exact submission was seen before."""
    fields = dict(
        name=request.name,
        dataset_source=request.dataset_source,
        goal=request.goal,
        target_column=request.target,
        task_type=request.task,
        resources=request.resources,
        requested_by=request.user_id,
        channel_id=request.channel_id or request.user_id,
        ttl_seconds=request.ttl_seconds,
        origin="slack",
        request_key=request.request_key,
    )
    try:
        with session_scope(ctx.services.engine) as session:
            seen = queries.get_job_by_request_key(session, request_key=request.request_key)
            job = seen or queries.create_job(session, **fields)  # type: ignore[arg-type]
    except IntegrityError:  # the same submission, delivered twice at once: the other won
        with session_scope(ctx.services.engine) as session:
            seen = queries.get_job_by_request_key(session, request_key=request.request_key)
        if seen is None:
            raise
        return seen, False
    if seen is not None:
        return seen, False
    _start(ctx, job.id)
    return job, True


def retry_job(ctx: BotContext, ref: str, user_id: str) -> TrainingJob:
    with session_scope(ctx.services.engine) as session:
        old = queries.find_job(session, ref=ref)
        try:
            job = queries.create_retry(session, job_id=old.id, requested_by=user_id)
        except queries.JobActionError as error:
            raise ActionRefused(str(error)) from error
    _start(ctx, job.id)
    return job


def cancel_job(ctx: BotContext, ref: str) -> TrainingJob:
    with session_scope(ctx.services.engine) as session:
        job = queries.find_job(session, ref=ref)
    try:
        return ctx.services.worker.cancel(job.id)
    except IllegalTransition as error:
        raise ActionRefused(
            f"job {job.short_id} is {job.status}; there is nothing to cancel"
        ) from error


def find_snapshot(ctx: BotContext, ref: str) -> JobSnapshot:
    with session_scope(ctx.services.engine) as session:
        return _snapshot(session, queries.find_job(session, ref=ref))


def latest_snapshot(ctx: BotContext, user_id: str) -> JobSnapshot | None:
    with session_scope(ctx.services.engine) as session:
        jobs = queries.list_jobs(session, requested_by=user_id, limit=1)
        return _snapshot(session, jobs[0]) if jobs else None


def recent_snapshots(
    ctx: BotContext, *, channel_id: str | None = None, user_id: str | None = None, limit: int = 15
) -> list[JobSnapshot]:
    with session_scope(ctx.services.engine) as session:
        jobs = queries.list_jobs(session, channel_id=channel_id, requested_by=user_id, limit=limit)
        return [_snapshot(session, job) for job in jobs]


def log_lines(ctx: BotContext, ref: str) -> tuple[JobSnapshot, list[str], int]:
    """The job's events and output as text lines, the last LOG_LINES_SHOWN of them."""
    with session_scope(ctx.services.engine) as session:
        job = queries.find_job(session, ref=ref)
        events = queries.list_events(session, job_id=job.id)
        snap = _snapshot(session, job)
    lines = [e.message if e.kind == "log" else f"[{e.stage}] {e.kind}: {e.message}" for e in events]
    return snap, lines[-LOG_LINES_SHOWN:], len(lines)


def _start(ctx: BotContext, job_id: str) -> None:
    # The card is queued before the job can emit anything, so it is always posted first.
    ctx.notifier.job_submitted(job_id)
    ctx.services.worker.submit(job_id)


def _snapshot(session: Session, job: TrainingJob) -> JobSnapshot:
    model = queries.get_model(session, model_id=job.model_id)
    events = queries.list_events(session, job_id=job.id, kinds=SUMMARY_KINDS)
    return build_snapshot(
        job,
        model_name=model.name if model else job.short_id,
        events=events,
        now=datetime.now(UTC),
    )
