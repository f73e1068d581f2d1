"""The Slack side of the use cases in pipeline.service: what the listeners share (the
context) and how a job is announced in Slack (its card, and who cancelled it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING

from bot import blocks
from bot.forms import TrainRequest
from bot.limits import LOG_LINES_SHOWN
from bot.notifier import SlackNotifier
from bot.settings import SlackSettings
from bot.snapshot import JobSnapshot, build_snapshot
from pipeline.service import JobDetail, JobRequest, JobService, Submitted
from storage.models import SHORT_ID_LENGTH

if TYPE_CHECKING:
    # Only the type: the bootstrap imports the whole pipeline (pandas, scikit-learn), which
    # the Slack listeners must not load (see tests/unit/test_light_imports.py).
    from pipeline.bootstrap import Services


class SlackAnnouncer:
    """The service's announcer in Slack: the card before any event, a reply on cancel."""

    def __init__(self, notifier: SlackNotifier) -> None:
        self.notifier = notifier

    def job_queued(self, job_id: str) -> None:
        self.notifier.job_submitted(job_id)

    def job_cancelled(self, job_id: str, by: str) -> None:
        self.notifier.reply(job_id, blocks.cancelled_reply(by))


@dataclass
class BotContext:
    services: Services
    slack: SlackSettings
    notifier: SlackNotifier

    @cached_property
    def jobs(self) -> JobService:
        # In Slack a job is named by its whole short id (see JobService.min_prefix).
        return JobService.of(
            self.services, announcer=SlackAnnouncer(self.notifier), min_prefix=SHORT_ID_LENGTH
        )

    @property
    def max_upload_bytes(self) -> int:
        return self.services.settings.max_dataset_mb * 1024 * 1024

    @property
    def max_lifetime(self) -> int | None:
        """The longest the active sandbox provider keeps an app up (None: no cap)."""
        return self.jobs.max_lifetime

    @property
    def default_lifetime(self) -> int:
        """TRAINBOT_APP_TTL; the form and the parser cap it to `max_lifetime`."""
        return self.jobs.default_lifetime


def submit_training(ctx: BotContext, request: TrainRequest) -> Submitted:
    """Records and queues the job; `created` is False when this submission was seen before."""
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
            origin="slack",
            request_key=request.request_key or None,
        )
    )


def snapshot(detail: JobDetail) -> JobSnapshot:
    """What Slack shows of a job the service found."""
    return build_snapshot(
        detail.job,
        model_name=detail.model_name or detail.job.short_id,
        events=detail.events,
        now=datetime.now(UTC),
    )


def log_lines(ctx: BotContext, ref: str) -> tuple[JobSnapshot, list[str], int]:
    """The job's events and output as text lines, the last LOG_LINES_SHOWN of them."""
    log = ctx.jobs.logs(ref)
    lines = [
        e.message if e.kind == "log" else f"[{e.stage}] {e.kind}: {e.message}" for e in log.events
    ]
    return snapshot(log.detail), lines[-LOG_LINES_SHOWN:], len(lines)
