"""Every query TrainBot makes. Keyword-only functions taking an open session."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from storage.models import ID_LENGTH, SHORT_ID_LENGTH, AiModel, JobEvent, TrainingJob, utcnow
from storage.states import (
    RUNNING_STAGES,
    STATUS_STAGE,
    TERMINAL,
    JobStatus,
    check_transition,
)

MIN_ID_PREFIX = 4
_HEX = frozenset("0123456789abcdef")


class JobLookupError(LookupError):
    """A job reference a person typed does not name exactly one job."""


class InvalidJobRef(JobLookupError):
    """What a person typed cannot be a job id at all; found out before any query."""


class JobActionError(Exception):
    """The job exists but is not in a state that allows what was asked."""


def create_job(
    session: Session,
    *,
    name: str,
    dataset_source: str,
    goal: str = "",
    target_column: str | None = None,
    task_type: str | None = None,
    resources: Iterable[str] = (),
    requested_by: str = "",
    channel_id: str | None = None,
    ttl_seconds: int = 3600,
    origin: str = "cli",
    request_key: str | None = None,
) -> TrainingJob:
    """Records the model and its first training job, queued.

    With a `request_key`, a second call for the same request returns the job the first one
    created. (Two racing calls: the loser's flush raises IntegrityError; call again.)
    """
    if request_key is not None:
        existing = get_job_by_request_key(session, request_key=request_key)
        if existing is not None:
            return existing
    model = AiModel(
        name=name,
        goal=goal,
        task_type=task_type,
        dataset_source=dataset_source,
        target_column=target_column,
        created_by=requested_by,
        channel_id=channel_id,
    )
    session.add(model)
    session.flush()
    job = TrainingJob(
        model_id=model.id,
        dataset_source=dataset_source,
        target_column=target_column,
        task_type=task_type,
        goal=goal,
        resources=list(resources),
        requested_by=requested_by,
        channel_id=channel_id,
        ttl_seconds=ttl_seconds,
        origin=origin,
        request_key=request_key,
    )
    session.add(job)
    session.flush()
    return job


def get_job_by_request_key(session: Session, *, request_key: str) -> TrainingJob | None:
    return session.exec(select(TrainingJob).where(TrainingJob.request_key == request_key)).first()


def create_retry(
    session: Session,
    *,
    job_id: str,
    requested_by: str | None = None,
    origin: str | None = None,
) -> TrainingJob:
    """A new queued job for the same model and inputs; the old job keeps its history.

    `origin` is where the retry was asked from: a CLI job retried from Slack becomes a
    Slack job, so it may no longer read files on the server.
    """
    old = _require(session, job_id)
    if old.job_status not in TERMINAL:
        raise JobActionError(
            f"job {old.short_id} is {old.status}; "
            "only failed, cancelled or expired jobs can be retried"
        )
    attempts = session.exec(
        select(func.max(TrainingJob.attempt)).where(TrainingJob.model_id == old.model_id)
    ).one()
    job = TrainingJob(
        model_id=old.model_id,
        attempt=(attempts or old.attempt) + 1,
        retry_of=old.id,
        dataset_source=old.dataset_source,
        target_column=old.target_column,
        task_type=old.task_type,
        goal=old.goal,
        resources=list(old.resources),
        requested_by=requested_by if requested_by is not None else old.requested_by,
        channel_id=old.channel_id,
        ttl_seconds=old.ttl_seconds,
        origin=origin or old.origin,
    )
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, *, job_id: str) -> TrainingJob | None:
    return session.get(TrainingJob, job_id)


def get_model(session: Session, *, model_id: str) -> AiModel | None:
    return session.get(AiModel, model_id)


def find_job(session: Session, *, ref: str, min_prefix: int = MIN_ID_PREFIX) -> TrainingJob:
    """A job by its full id or an unambiguous prefix of it (people type the short id)."""
    ref = parse_job_ref(ref, min_prefix=min_prefix)
    jobs = session.exec(
        select(TrainingJob).where(col(TrainingJob.id).startswith(ref)).limit(2)
    ).all()
    if not jobs:
        raise JobLookupError(f"no job has the id {ref}")
    if len(jobs) > 1:
        raise JobLookupError(f"{ref} matches several jobs; type more of the id")
    return jobs[0]


def parse_job_ref(ref: str, *, min_prefix: int = MIN_ID_PREFIX) -> str:
    """`ref` as a job id or id prefix, or InvalidJobRef: the one check of what people type,
    so no query ever sees an arbitrary string (SQLite refuses LIKE patterns over 50,000)."""
    ref = ref.strip().lower()
    if min_prefix <= len(ref) <= ID_LENGTH and _HEX.issuperset(ref):
        return ref
    shown = ref if len(ref) <= 40 else ref[:39] + "…"
    shown = "".join(c if c.isprintable() else "?" for c in shown)
    raise InvalidJobRef(
        f"'{shown}' is not a job id; job ids look like a1b2c3d4 "
        f"({min_prefix} to {ID_LENGTH} of the id's letters and digits)"
    )


def list_jobs(
    session: Session,
    *,
    channel_id: str | None = None,
    requested_by: str | None = None,
    statuses: Iterable[JobStatus] | None = None,
    limit: int = 20,
) -> list[TrainingJob]:
    """Newest first."""
    query = select(TrainingJob).where(*_job_filters(channel_id, requested_by, statuses))
    query = query.order_by(col(TrainingJob.created_at).desc(), col(TrainingJob.id)).limit(limit)
    return list(session.exec(query).all())


def count_jobs(
    session: Session,
    *,
    channel_id: str | None = None,
    requested_by: str | None = None,
    statuses: Iterable[JobStatus] | None = None,
) -> int:
    """How many jobs `list_jobs` would find without its limit."""
    query = select(func.count()).select_from(TrainingJob)
    query = query.where(*_job_filters(channel_id, requested_by, statuses))
    return int(session.exec(query).one())


def _job_filters(
    channel_id: str | None, requested_by: str | None, statuses: Iterable[JobStatus] | None
) -> list[Any]:
    filters: list[Any] = []
    if channel_id is not None:
        filters.append(TrainingJob.channel_id == channel_id)
    if requested_by is not None:
        filters.append(TrainingJob.requested_by == requested_by)
    if statuses is not None:
        filters.append(col(TrainingJob.status).in_([s.value for s in statuses]))
    return filters


def transition(
    session: Session,
    *,
    job_id: str,
    to: JobStatus,
    error: str | None = None,
    at: datetime | None = None,
) -> TrainingJob:
    """Moves a job along the state machine; raises IllegalTransition for a move it forbids."""
    job = _require(session, job_id, for_update=True)
    check_transition(job.job_status, to)
    now = at or utcnow()
    job.status = to.value
    if to in RUNNING_STAGES:
        job.stage = STATUS_STAGE[to].value
        job.started_at = job.started_at or now
    if to == JobStatus.LIVE:
        job.live_at = now
    if to in TERMINAL or to == JobStatus.LIVE:
        job.finished_at = job.finished_at or now
    if to in TERMINAL and to != JobStatus.FAILED:
        model = session.get(AiModel, job.model_id)
        if model is not None and model.deployed_url == job.deployment_url:
            model.deployed_url = None  # the app is gone; the job keeps the URL as history
            model.updated_at = now
    if error is not None:
        job.error = error
    job.updated_at = now
    session.add(job)
    session.flush()
    return job


def mark_live(session: Session, *, job_id: str, url: str, expires_at: datetime) -> TrainingJob:
    job = transition(session, job_id=job_id, to=JobStatus.LIVE)
    job.deployment_url = url
    job.expires_at = expires_at
    model = session.get(AiModel, job.model_id)
    if model is not None:
        model.deployed_url = url
        model.updated_at = utcnow()
        session.add(model)
    session.add(job)
    session.flush()
    return job


UPDATABLE_FIELDS = frozenset(
    {
        "task_type",
        "target_column",
        "codegen_provider",
        "sandbox_provider",
        "sandbox_id",
        "metrics",
        "artifacts",
        "stage_timings",
        "expires_at",
        "card_channel_id",
        "card_ts",
    }
)


def update_job(session: Session, *, job_id: str, **fields: Any) -> TrainingJob:
    """Sets recorded facts about a job. Status changes go through `transition` instead."""
    unknown = set(fields) - UPDATABLE_FIELDS
    if unknown:
        raise ValueError(f"not updatable here: {sorted(unknown)}")
    job = _require(session, job_id, for_update=True)
    for name, value in fields.items():
        setattr(job, name, value)
    job.updated_at = utcnow()
    if "task_type" in fields:
        model = session.get(AiModel, job.model_id)
        if model is not None:
            model.task_type = fields["task_type"]
            session.add(model)
    session.add(job)
    session.flush()
    return job


def add_event(
    session: Session,
    *,
    job_id: str,
    kind: str,
    stage: str,
    message: str,
    data: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> JobEvent:
    event = JobEvent(
        job_id=job_id, kind=kind, stage=stage, message=message, data=data or {}, at=at or utcnow()
    )
    session.add(event)
    session.flush()
    return event


def list_events(
    session: Session,
    *,
    job_id: str,
    after_id: int = 0,
    kinds: Iterable[str] | None = None,
    limit: int | None = None,
) -> list[JobEvent]:
    """In the order they happened."""
    query = select(JobEvent).where(JobEvent.job_id == job_id, col(JobEvent.id) > after_id)
    if kinds is not None:
        query = query.where(col(JobEvent.kind).in_(list(kinds)))
    query = query.order_by(col(JobEvent.id))
    if limit is not None:
        query = query.limit(limit)
    return list(session.exec(query).all())


def _require(session: Session, job_id: str, *, for_update: bool = False) -> TrainingJob:
    query = select(TrainingJob).where(TrainingJob.id == job_id)
    if for_update:
        query = query.with_for_update()  # PostgreSQL locks the row; SQLite ignores it
    job = session.exec(query).first()
    if job is None:
        raise JobLookupError(f"no job has the id {job_id[:SHORT_ID_LENGTH]}")
    return job
