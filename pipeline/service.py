"""What people can ask of TrainBot, in one place: the CLI, the Slack listeners and the HTTP
API all call these (as cosmicpython's entrypoints call its service layer).

Entry points parse what was typed, call one method and present the result or the error.
This module stays import-light (no pandas, scikit-learn or Slack): the Slack listeners
import it and must answer within Slack's 3 s (see tests/unit/test_light_imports.py).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.engine import Engine
from sqlmodel import Session

from pipeline.budget import DEFAULT_BUDGET, MAX_BUDGET, BudgetRange
from pipeline.errors import PipelineError
from pipeline.events import EventKind
from pipeline.expiry import EARLY_STOP_TOLERANCE
from pipeline.limits import MIN_APP_LIFETIME
from storage import queries
from storage.db import create_job_once, session_scope
from storage.models import JobEvent, TrainingJob
from storage.states import IllegalTransition, JobStatus

if TYPE_CHECKING:
    # Only the type: the bootstrap imports the whole pipeline (pandas, scikit-learn).
    from pipeline.bootstrap import Services

log = logging.getLogger(__name__)

# The events a summary of a job is built from (output lines are left out: there can be
# thousands).
SUMMARY_KINDS = ("started", "finished", "failed", "progress", "warning")


# -- errors: each message is written for the person who asked ------------------------------


class ServiceError(Exception):
    """What was asked cannot be done; `str(error)` says why, in plain words."""


class InvalidJobRef(ServiceError):
    """What was typed cannot be a job id at all."""


class JobNotFound(ServiceError):
    """The id names no job, or more than one."""


class ActionRefused(ServiceError):
    """The job exists but is not in a state that allows what was asked."""


class LifetimeRefused(ServiceError):
    """A lifetime the sandbox provider cannot give, or too short to be of use."""

    def __init__(self, message: str, *, asked: int, most: int | None = None) -> None:
        super().__init__(message)
        self.asked = asked
        self.most = most  # the provider's cap, when that is what was passed


class BudgetRefused(ServiceError):
    """A training budget out of the range this service's settings allow."""


class SandboxControl(Protocol):
    """The sandbox provider, as the use cases need it: any process can extend or stop an
    app by its sandbox id (pipeline.sandbox.base.SandboxProvider implements it)."""

    name: str
    max_lifetime: int | None
    survives_worker: bool

    def extend(self, sandbox_id: str, seconds: int) -> datetime: ...

    def kill(self, sandbox_id: str) -> bool: ...


class LocalWorker(Protocol):
    """The worker in this process, if there is one (pipeline.worker.JobWorker): told at once
    what other processes learn from the database a moment later."""

    def wake(self) -> None:
        """A job was queued: look for work now."""
        ...

    def job_ended(self, job_id: str) -> None:
        """The job was cancelled: stop it now if this process runs it or serves its app."""
        ...


@dataclass(frozen=True)
class JobRequest:
    name: str
    dataset_source: str
    requested_by: str
    origin: str  # "cli" or "slack": what the job may read (only the CLI reads local files)
    goal: str = ""
    target: str | None = None
    task: str | None = None
    resources: Sequence[str] = ()
    channel_id: str | None = None
    ttl_seconds: int | None = None  # None: the default lifetime, capped to the provider's
    time_budget_seconds: int | None = None  # None: the worker's TRAINBOT_TRAIN_BUDGET_SECONDS
    request_key: str | None = None  # the same key twice is one job (a redelivered form)
    team_id: str | None = None  # the Slack workspace asking (None: the CLI)
    enterprise_id: str | None = None


@dataclass(frozen=True)
class Lifetime:
    seconds: int
    capped_from: int | None = None  # the default that was longer than the provider allows


@dataclass(frozen=True)
class Submitted:
    job: TrainingJob
    created: bool  # False: this exact request was seen before, and nothing new was queued
    lifetime: Lifetime


@dataclass(frozen=True)
class JobDetail:
    job: TrainingJob
    model_name: str | None
    events: list[JobEvent] = field(default_factory=list)  # the summary kinds, in order


@dataclass(frozen=True)
class JobPage:
    """The newest jobs that match, and how many match in all (shown or not)."""

    items: list[JobDetail]
    total: int


@dataclass(frozen=True)
class JobLog:
    detail: JobDetail
    events: list[JobEvent]  # every event, output lines included, in order


@dataclass(frozen=True)
class Extended:
    job: TrainingJob
    expires_at: datetime
    asked_until: datetime

    @property
    def cut_short(self) -> bool:
        """The provider stops the app sooner than asked (E2B clamps to the plan's cap)."""
        return (self.asked_until - self.expires_at).total_seconds() > EARLY_STOP_TOLERANCE


# -- the use cases -------------------------------------------------------------------------


@dataclass(frozen=True)
class JobService:
    engine: Engine
    # None: a service that only reads (status, list, logs), built without any provider.
    sandboxes: SandboxControl | None
    default_lifetime: int  # TRAINBOT_APP_TTL
    # The worker of this process, when it has one; the database tells the others.
    local: LocalWorker | None = None
    # The shortest id prefix accepted. Slack asks for the whole short id: a shorter prefix
    # would let anyone walk through everyone's jobs (`/train logs 0000`, `0001`, ...).
    min_prefix: int = queries.MIN_ID_PREFIX
    # The workspace whose jobs this service sees and acts on (see `for_workspace`); both
    # None: every job (the CLI and the operator's API).
    team_id: str | None = None
    enterprise_id: str | None = None
    # The training budgets a submitter may choose (TRAINBOT_TRAIN_TIMEOUT bounds them).
    budgets: BudgetRange = BudgetRange(default=DEFAULT_BUDGET, most=MAX_BUDGET)

    @classmethod
    def of(cls, services: Services, *, min_prefix: int = queries.MIN_ID_PREFIX) -> JobService:
        return cls(
            engine=services.engine,
            sandboxes=services.deps.sandboxes,
            default_lifetime=services.settings.app_ttl,
            local=services.worker,
            min_prefix=min_prefix,
            budgets=services.settings.train_budgets,
        )

    @classmethod
    def reader(cls, engine: Engine, *, min_prefix: int = queries.MIN_ID_PREFIX) -> JobService:
        """A service for status, list and logs only: it needs no sandbox provider."""
        return cls(engine, None, 0, min_prefix=min_prefix)

    def for_workspace(self, team_id: str | None, enterprise_id: str | None) -> JobService:
        """This service, seeing only one Slack workspace's jobs: another workspace's job is
        "no job has the id ...", exactly as an id that names none, even by its full id. A
        workspace is its team; without one (an Enterprise Grid org-wide install), the org."""
        if team_id is None and enterprise_id is None:
            # A Slack request always names its workspace; none would mean every job.
            raise ValueError("a workspace needs a team_id or an enterprise_id")
        return replace(self, team_id=team_id, enterprise_id=enterprise_id)

    @property
    def provider(self) -> str:
        """The sandbox provider's name, for messages."""
        return self.sandboxes.name if self.sandboxes is not None else ""

    @property
    def max_lifetime(self) -> int | None:
        """The provider's cap on an app's life in seconds (None: no cap)."""
        return self.sandboxes.max_lifetime if self.sandboxes is not None else None

    def lifetime(self, seconds: int | None) -> Lifetime:
        return lifetime(
            seconds,
            default=self.default_lifetime,
            max_lifetime=self.max_lifetime,
            provider=self.provider,
        )

    def submit(self, request: JobRequest) -> Submitted:
        """Records and queues the job, once per `request_key`. Storage writes its "queued"
        event and wakes the workers in the same transaction."""
        self._writes()
        life = self.lifetime(request.ttl_seconds)
        budget = request.time_budget_seconds
        problem = self.budgets.problem(budget) if budget is not None else None
        if problem:
            raise BudgetRefused(problem)
        job, created = create_job_once(
            self.engine,
            name=request.name,
            dataset_source=request.dataset_source,
            goal=request.goal,
            target_column=request.target,
            task_type=request.task,
            resources=list(request.resources),
            requested_by=request.requested_by,
            channel_id=request.channel_id,
            team_id=request.team_id,
            enterprise_id=request.enterprise_id,
            ttl_seconds=life.seconds,
            time_budget_seconds=budget,
            origin=request.origin,
            request_key=request.request_key,
        )
        if created and self.local is not None:
            self.local.wake()
        return Submitted(job, created, life)

    def cancel(self, ref: str, *, by: str) -> TrainingJob:
        """Cancels a queued or running job, or stops its live app, from any process: the
        change and its event are one transaction; the worker holding the job stops it."""
        self._writes()
        with session_scope(self.engine) as session:
            job = self._find(session, ref)
            was_live = job.job_status == JobStatus.LIVE
            holder = job.worker_id
            try:
                job = queries.transition(session, job_id=job.id, to=JobStatus.CANCELLED)
            except IllegalTransition as error:
                raise ActionRefused(
                    f"job {job.short_id} is {job.status}; there is nothing to cancel"
                ) from error
            queries.add_event(
                session,
                job_id=job.id,
                kind=EventKind.FINISHED.value,
                stage=queries.JOB_STAGE,
                message="the live app was stopped" if was_live else "cancelled",
                data={"status": JobStatus.CANCELLED.value, "by": by},
            )
        if self.local is not None:
            self.local.job_ended(job.id)
        if was_live and job.sandbox_id and (holder is None or self._survives):
            # Nobody holds an app that outlives its worker (E2B): stop it from here.
            self._kill_later(job.sandbox_id)
        return job

    def retry(self, ref: str, *, by: str, origin: str) -> TrainingJob:
        """A new attempt of a job that ended; the old one keeps its history."""
        self._writes()
        with session_scope(self.engine) as session:
            old = self._find(session, ref)
            try:
                job = queries.create_retry(session, job_id=old.id, requested_by=by, origin=origin)
            except queries.JobActionError as error:
                raise ActionRefused(str(error)) from error
        if self.local is not None:
            self.local.wake()
        return job

    def extend(self, ref: str, *, hours: float) -> Extended:
        """Keeps a live app up `hours` from now, within the provider's cap, from any process:
        the provider is asked by sandbox id, and the new end is the row every worker's sweep
        acts on."""
        self._writes()
        seconds = round(hours * 3600) if math.isfinite(hours) else 0
        if seconds < MIN_APP_LIFETIME:
            raise LifetimeRefused("say how many hours more, such as 1 or 0.5", asked=seconds)
        if self.max_lifetime is not None and seconds > self.max_lifetime:
            raise LifetimeRefused(
                f"{_hours(seconds)} is too long: the {self.provider} sandbox keeps an app up "
                f"for at most {_hours(self.max_lifetime)}",
                asked=seconds,
                most=self.max_lifetime,
            )
        with session_scope(self.engine) as session:
            job = self._find(session, ref)
        if job.job_status != JobStatus.LIVE or not job.sandbox_id:
            raise ActionRefused(f"job {job.short_id} is {job.status}; only a live app is extended")
        asked_until = datetime.now(UTC) + timedelta(seconds=seconds)
        try:
            ends = self._sandboxes.extend(job.sandbox_id, seconds)
        except PipelineError as error:
            refused = f"the app of job {job.short_id} was not extended: {error}"
            raise ActionRefused(refused) from error
        with session_scope(self.engine) as session:
            try:
                job = queries.record_extension(session, job_id=job.id, expires_at=ends)
            except IllegalTransition as error:
                raise ActionRefused(
                    f"job {job.short_id} stopped meanwhile; only a live app is extended"
                ) from error
            queries.add_event(
                session,
                job_id=job.id,
                kind=EventKind.PROGRESS.value,
                stage=queries.JOB_STAGE,
                message=f"kept up until {ends.isoformat(timespec='minutes')}",
                data={"expires_at": ends.isoformat()},
            )
        return Extended(job, ends, asked_until)

    def status(self, ref: str, *, with_events: bool = True) -> JobDetail:
        """`with_events` False skips the summary events, for callers that show only the row."""
        with session_scope(self.engine) as session:
            return _detail(session, self._find(session, ref), with_events=with_events)

    def latest(self, *, requested_by: str) -> JobDetail | None:
        """The newest job this person asked for, if any."""
        with session_scope(self.engine) as session:
            jobs = queries.list_jobs(
                session,
                requested_by=requested_by,
                limit=1,
                team_id=self.team_id,
                enterprise_id=self.enterprise_id,
            )
            return _detail(session, jobs[0]) if jobs else None

    def list(
        self,
        *,
        limit: int,
        channel_id: str | None = None,
        requested_by: str | None = None,
        statuses: Iterable[JobStatus] | None = None,
        with_events: bool = True,
    ) -> JobPage:
        """Newest first, with how many match in all."""
        where: dict[str, Any] = {
            "channel_id": channel_id,
            "requested_by": requested_by,
            "statuses": statuses,
            "team_id": self.team_id,
            "enterprise_id": self.enterprise_id,
        }
        with session_scope(self.engine) as session:
            jobs = queries.list_jobs(session, limit=limit, **where)
            total = queries.count_jobs(session, **where)
            # The page's models and events in a query each, not two queries per job.
            names = queries.model_names(session, model_ids=[job.model_id for job in jobs])
            ids = [job.id for job in jobs] if with_events else []
            events = queries.events_of_jobs(session, job_ids=ids, kinds=SUMMARY_KINDS)
            details = [
                JobDetail(job, names.get(job.model_id), events.get(job.id, [])) for job in jobs
            ]
            return JobPage(details, total)

    def logs(self, ref: str) -> JobLog:
        with session_scope(self.engine) as session:
            job = self._find(session, ref)
            return JobLog(_detail(session, job), queries.list_events(session, job_id=job.id))

    # -- internals -----------------------------------------------------------------------

    @property
    def _sandboxes(self) -> SandboxControl:
        if self.sandboxes is None:  # a mistake in the code, never something a person did
            raise RuntimeError("this JobService only reads; build it with JobService.of")
        return self.sandboxes

    def _writes(self) -> None:
        self._sandboxes  # noqa: B018 - raises for a service that only reads

    @property
    def _survives(self) -> bool:
        return self.sandboxes is not None and self.sandboxes.survives_worker

    def _kill_later(self, sandbox_id: str) -> None:
        """Stops a sandbox in the background, so a Slack command can answer at once (a cloud
        sandbox takes seconds). A failure only logs: the job is cancelled either way."""
        sandboxes = self._sandboxes

        def kill() -> None:
            try:
                sandboxes.kill(sandbox_id)
            except Exception:  # noqa: BLE001 - the state change already happened
                log.exception("could not stop sandbox %s", sandbox_id)

        threading.Thread(target=kill, name=f"kill-{sandbox_id[:12]}", daemon=True).start()

    def _find(self, session: Session, ref: str) -> TrainingJob:
        try:
            return queries.find_job(
                session,
                ref=ref,
                min_prefix=self.min_prefix,
                team_id=self.team_id,
                enterprise_id=self.enterprise_id,
            )
        except queries.InvalidJobRef as error:
            raise InvalidJobRef(str(error)) from error
        except queries.JobLookupError as error:
            raise JobNotFound(str(error)) from error


def lifetime(
    seconds: int | None, *, default: int, max_lifetime: int | None, provider: str
) -> Lifetime:
    """The lifetime a job gets: one asked past the provider's cap (`max_lifetime`) is
    refused; the default is capped to it."""
    if seconds is None:
        if max_lifetime is not None and default > max_lifetime:
            return Lifetime(max_lifetime, capped_from=default)
        return Lifetime(default)
    if seconds < MIN_APP_LIFETIME:
        raise LifetimeRefused(
            f"an app must stay up at least {MIN_APP_LIFETIME} seconds", asked=seconds
        )
    if max_lifetime is not None and seconds > max_lifetime:
        raise LifetimeRefused(
            f"{seconds} seconds is too long: the {provider} sandbox keeps an app up "
            f"for at most {max_lifetime} seconds",
            asked=seconds,
            most=max_lifetime,
        )
    return Lifetime(seconds)


def _detail(session: Session, job: TrainingJob, *, with_events: bool = True) -> JobDetail:
    model = queries.get_model(session, model_id=job.model_id)
    events = queries.list_events(session, job_id=job.id, kinds=SUMMARY_KINDS) if with_events else []
    return JobDetail(job, model.name if model else None, events)


def _hours(seconds: int) -> str:
    hours = seconds / 3600
    shown = f"{hours:g}" if hours >= 1 else f"{hours:.2g}"
    return f"{shown} hour" if shown == "1" else f"{shown} hours"
