"""What the Slack handlers ask for, in one place: handlers parse and ack; this does the work."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlmodel import Session

from bot import blocks
from bot.forms import TrainRequest
from bot.limits import LOG_LINES_SHOWN
from bot.notifier import SlackNotifier
from bot.settings import SlackSettings
from bot.snapshot import JobSnapshot, load_snapshot
from storage import queries
from storage.db import create_job_once, session_scope
from storage.models import SHORT_ID_LENGTH, TrainingJob
from storage.states import IllegalTransition

if TYPE_CHECKING:
    # Only the type: the bootstrap imports the whole pipeline (pandas, scikit-learn), which
    # the Slack listeners must not load (see tests/unit/test_light_imports.py).
    from pipeline.bootstrap import Services

# In Slack a job is named by its whole short id: a shorter prefix would let anyone walk
# through everyone's jobs (`/train logs 0000`, `0001`, ...).
SLACK_MIN_ID = SHORT_ID_LENGTH


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

    @property
    def max_lifetime(self) -> int | None:
        """The longest the active sandbox provider keeps an app up (None: no cap)."""
        return self.services.deps.sandboxes.max_lifetime

    @property
    def default_lifetime(self) -> int:
        """TRAINBOT_APP_TTL; the form and the parser cap it to `max_lifetime`."""
        return self.services.settings.app_ttl


@dataclass(frozen=True)
class JobPage:
    """The newest jobs that match, and how many match in all (shown or not)."""

    snapshots: list[JobSnapshot]
    total: int


def submit_training(ctx: BotContext, request: TrainRequest) -> tuple[TrainingJob, bool]:
    """Records and queues the job; (job, False) when this exact submission was seen before."""
    job, created = create_job_once(
        ctx.services.engine,
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
    if created:
        _start(ctx, job.id)
    return job, created


def retry_job(ctx: BotContext, ref: str, user_id: str) -> TrainingJob:
    with session_scope(ctx.services.engine) as session:
        old = _find(session, ref)
        try:
            job = queries.create_retry(session, job_id=old.id, requested_by=user_id, origin="slack")
        except queries.JobActionError as error:
            raise ActionRefused(str(error)) from error
    _start(ctx, job.id)
    return job


def cancel_job(ctx: BotContext, ref: str, *, by: str) -> TrainingJob:
    """Cancels (or stops the app of) a job and says in its thread who did."""
    with session_scope(ctx.services.engine) as session:
        job = _find(session, ref)
    try:
        job = ctx.services.worker.cancel(job.id)
    except IllegalTransition as error:
        raise ActionRefused(
            f"job {job.short_id} is {job.status}; there is nothing to cancel"
        ) from error
    ctx.notifier.reply(job.id, blocks.cancelled_reply(by))
    return job


def find_snapshot(ctx: BotContext, ref: str) -> JobSnapshot:
    with session_scope(ctx.services.engine) as session:
        return load_snapshot(session, _find(session, ref))


def latest_snapshot(ctx: BotContext, user_id: str) -> JobSnapshot | None:
    with session_scope(ctx.services.engine) as session:
        jobs = queries.list_jobs(session, requested_by=user_id, limit=1)
        return load_snapshot(session, jobs[0]) if jobs else None


def recent_jobs(
    ctx: BotContext, *, limit: int, channel_id: str | None = None, user_id: str | None = None
) -> JobPage:
    with session_scope(ctx.services.engine) as session:
        jobs = queries.list_jobs(session, channel_id=channel_id, requested_by=user_id, limit=limit)
        total = queries.count_jobs(session, channel_id=channel_id, requested_by=user_id)
        return JobPage([load_snapshot(session, job) for job in jobs], total)


def log_lines(ctx: BotContext, ref: str) -> tuple[JobSnapshot, list[str], int]:
    """The job's events and output as text lines, the last LOG_LINES_SHOWN of them."""
    with session_scope(ctx.services.engine) as session:
        job = _find(session, ref)
        events = queries.list_events(session, job_id=job.id)
        snap = load_snapshot(session, job)
    lines = [e.message if e.kind == "log" else f"[{e.stage}] {e.kind}: {e.message}" for e in events]
    return snap, lines[-LOG_LINES_SHOWN:], len(lines)


def _find(session: Session, ref: str) -> TrainingJob:
    return queries.find_job(session, ref=ref, min_prefix=SLACK_MIN_ID)


def _start(ctx: BotContext, job_id: str) -> None:
    # The card is queued before the job can emit anything, so it is always posted first.
    ctx.notifier.job_submitted(job_id)
    ctx.services.worker.submit(job_id)
