"""The Slack side of the use cases in pipeline.service: what the listeners share (the
context, which holds the notifier that shows every job event in Slack)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from bot.forms import TrainRequest
from bot.limits import LOG_LINES_SHOWN
from bot.notifier import SlackNotifier
from bot.settings import SlackSettings
from bot.snapshot import JobSnapshot, build_snapshot
from pipeline.budget import BudgetRange
from pipeline.command_log import skipped_notes
from pipeline.service import JobDetail, JobRequest, JobService, ServiceError, Submitted
from storage.models import SHORT_ID_LENGTH, TrainingJob
from storage.states import ACTIVE, JobStatus

EXTEND_HOURS = 1.0  # what the expiry notice's Extend button adds, within the provider's cap

if TYPE_CHECKING:
    # Only the type: the bootstrap imports the whole pipeline (pandas, scikit-learn), which
    # the Slack listeners must not load (see tests/unit/test_light_imports.py).
    from pipeline.bootstrap import Services


@dataclass
class BotContext:
    services: Services
    slack: SlackSettings
    notifier: SlackNotifier

    @cached_property
    def jobs(self) -> JobService:
        # In Slack a job is named by its whole short id (see JobService.min_prefix).
        # No announcer: the service's events (queued, cancelled) reach Slack through the
        # notifier, which follows job_events in the database.
        return JobService.of(self.services, min_prefix=SHORT_ID_LENGTH)

    def jobs_for(self, context: Mapping[str, Any]) -> JobService:
        """The jobs a Slack request may see and act on. In OAuth mode, only its workspace's
        (Bolt's context has the team and enterprise of the request); with SLACK_BOT_TOKEN
        there is one workspace, and every job is its own, as before workspaces were kept."""
        if not self.slack.oauth:
            return self.jobs
        return self.jobs.for_workspace(context.get("team_id"), context.get("enterprise_id"))

    @property
    def max_upload_bytes(self) -> int:
        return self.services.settings.max_dataset_mb * 1024 * 1024

    @property
    def max_lifetime(self) -> int | None:
        """The longest the active sandbox provider keeps an app up (None: no cap)."""
        return self.jobs.max_lifetime

    @property
    def extend_hours(self) -> float:
        """What the expiry notice's Extend button adds (see `extend_hours`)."""
        return extend_hours(self.max_lifetime)

    @property
    def budgets(self) -> BudgetRange:
        """The training times the form offers and accepts (TRAINBOT_TRAIN_BUDGET_SECONDS
        within what TRAINBOT_TRAIN_TIMEOUT leaves room for)."""
        return self.jobs.budgets

    @property
    def default_lifetime(self) -> int:
        """TRAINBOT_APP_TTL; the form and the parser cap it to `max_lifetime`."""
        return self.jobs.default_lifetime


def extend_hours(max_lifetime: int | None) -> float:
    """An hour, or the provider's whole lifetime cap if that is less."""
    if max_lifetime is None:
        return EXTEND_HOURS
    return min(EXTEND_HOURS, max_lifetime / 3600)


def submit_training(
    ctx: BotContext, request: TrainRequest, *, context: Mapping[str, Any]
) -> Submitted:
    """Records and queues the job in the workspace of `context` (Bolt's); `created` is False
    when this submission was seen before."""
    return ctx.jobs.submit(
        JobRequest(
            name=request.name,
            dataset_source=request.dataset_source,
            goal=request.goal,
            target=request.target,
            task=request.task,
            resources=request.resources,
            requested_by=request.user_id,
            channel_id=request.channel_id or request.user_id,
            ttl_seconds=request.ttl_seconds,
            time_budget_seconds=request.time_budget_seconds,
            origin="slack",
            request_key=request.request_key or None,
            team_id=context.get("team_id"),
            enterprise_id=context.get("enterprise_id"),
        )
    )


# What stops with a workspace that removes the app: anything still running, and live apps.
STOPPED_WITH_WORKSPACE = frozenset({*ACTIVE, JobStatus.LIVE})


def stop_workspace(
    ctx: BotContext, *, team_id: str | None, enterprise_id: str | None
) -> list[TrainingJob]:
    """Cancels every queued or running job and stops every live app of a workspace that
    uninstalled the app (nobody there could see or cancel them any more)."""
    jobs = ctx.jobs.for_workspace(team_id, enterprise_id)
    stopped: list[TrainingJob] = []
    asked: set[str] = set()  # a job that would not cancel (it ended meanwhile) is asked once
    while True:
        page = jobs.list(limit=100, statuses=STOPPED_WITH_WORKSPACE, with_events=False)
        todo = [detail.job for detail in page.items if detail.job.id not in asked]
        if not todo:
            return stopped
        for job in todo:
            asked.add(job.id)
            try:
                stopped.append(jobs.cancel(job.id, by=""))
            except ServiceError:
                pass  # it finished, failed or was cancelled on its own meanwhile


def snapshot(detail: JobDetail) -> JobSnapshot:
    """What Slack shows of a job the service found."""
    return build_snapshot(
        detail.job,
        model_name=detail.model_name or detail.job.short_id,
        events=detail.events,
        now=datetime.now(UTC),
    )


def log_lines(jobs: JobService, ref: str) -> tuple[JobSnapshot, list[str], int]:
    """The job's events and output as text lines, the last LOG_LINES_SHOWN of them, and how
    many there are in all: counting the output lines only the job's log file holds."""
    log = jobs.logs(ref)
    lines = [
        e.message if e.kind == "log" else f"[{e.stage}] {e.kind}: {e.message}" for e in log.events
    ]
    skipped = sum(note.skipped for note in skipped_notes(log.events))
    return snapshot(log.detail), lines[-LOG_LINES_SHOWN:], len(lines) + skipped
