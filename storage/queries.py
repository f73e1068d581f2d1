"""Every query TrainBot makes. Keyword-only functions taking an open session."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, bindparam, func, insert, literal_column, update
from sqlalchemy.sql import Executable
from sqlmodel import Session, col, select

from storage.models import ID_LENGTH, SHORT_ID_LENGTH, AiModel, JobEvent, TrainingJob, utcnow
from storage.notify import EVENTS_CHANNEL, JOBS_CHANNEL, notify
from storage.states import (
    RUNNING_STAGES,
    STATUS_STAGE,
    TERMINAL,
    IllegalTransition,
    JobStatus,
    NotHeld,
    check_transition,
)

MIN_ID_PREFIX = 4
# The kind and stage of the event every job starts with, written with the job itself: the
# notifier posts a Slack job's card on it, before any other event of the job.
QUEUED_KIND = "queued"
JOB_STAGE = "job"
_HEX = frozenset("0123456789abcdef")


class JobLookupError(LookupError):
    """A job reference a person typed does not name exactly one job."""


class InvalidJobRef(JobLookupError):
    """What a person typed cannot be a job id at all; found out before any query."""


class JobActionError(Exception):
    """The job exists but is not in a state that allows what was asked."""


@dataclass(frozen=True)
class NewJob:
    """A model, its first training job and the job's "queued" event, not yet stored: what
    `create_job` and `insert_new_job` write together."""

    model: AiModel
    job: TrainingJob
    queued: JobEvent


def new_job(
    *,
    name: str,
    dataset_source: str,
    goal: str = "",
    target_column: str | None = None,
    task_type: str | None = None,
    resources: Iterable[str] = (),
    requested_by: str = "",
    channel_id: str | None = None,
    team_id: str | None = None,
    enterprise_id: str | None = None,
    ttl_seconds: int = 3600,
    time_budget_seconds: int | None = None,
    origin: str = "cli",
    request_key: str | None = None,
) -> NewJob:
    """The rows of a new model and job, ids and times made here (nothing asks the database)."""
    model = AiModel(
        name=name,
        goal=goal,
        task_type=task_type,
        dataset_source=dataset_source,
        target_column=target_column,
        created_by=requested_by,
        channel_id=channel_id,
        team_id=team_id,
        enterprise_id=enterprise_id,
    )
    job = TrainingJob(
        model_id=model.id,
        dataset_source=dataset_source,
        target_column=target_column,
        task_type=task_type,
        goal=goal,
        resources=list(resources),
        requested_by=requested_by,
        channel_id=channel_id,
        team_id=team_id,
        enterprise_id=enterprise_id,
        ttl_seconds=ttl_seconds,
        time_budget_seconds=time_budget_seconds,
        origin=origin,
        request_key=request_key,
    )
    queued = JobEvent(
        job_id=job.id, kind=QUEUED_KIND, stage=JOB_STAGE, message="queued", at=job.created_at
    )
    return NewJob(model, job, queued)


def create_job(session: Session, **fields: Any) -> TrainingJob:
    """Records the model and its first training job, queued, and wakes the workers. Takes
    `new_job`'s fields.

    With a `request_key`, a second call for the same request returns the job the first one
    created. (Two racing calls: the loser's flush raises IntegrityError; call again.)
    """
    request_key = fields.get("request_key")
    if request_key is not None:
        existing = get_job_by_request_key(session, request_key=request_key)
        if existing is not None:
            return existing
    return add_new_job(session, new_job(**fields))


def add_new_job(session: Session, new: NewJob) -> TrainingJob:
    """Stores `new` in the session's transaction and wakes the workers and the
    notifier when it commits. A `request_key` already taken raises IntegrityError."""
    for row in (new.model, new.job, new.queued):  # in foreign-key order: the ORM knows no
        session.add(row)  # relationship between them to order one flush by
        session.flush()
    notify(session, EVENTS_CHANNEL)
    notify(session, JOBS_CHANNEL)
    return new.job


def insert_new_job(connection: Connection, new: NewJob) -> None:
    """PostgreSQL only: `add_new_job` as one statement, for a connection in autocommit, so
    recording a Slack submission before its ack is one round trip. The model, the job, its
    event and both wake-ups commit together or not at all; a `request_key` already taken
    fails the whole statement (IntegrityError). A column left None is not written: it takes
    its default (SQL NULL, where the ORM would write JSON's null; both read back as None)."""
    params: dict[str, Any] = {}
    shape = []
    for (_, prefix, _), row in zip(_NEW_JOB_ROWS, (new.model, new.job, new.queued), strict=True):
        values = {name: value for name, value in row.model_dump().items() if value is not None}
        shape.append(tuple(values))
        params |= {prefix + name: value for name, value in values.items()}
    connection.execute(_insert_new_job(tuple(shape)), params)


_NEW_JOB_ROWS: tuple[tuple[Table, str, str], ...] = (
    (AiModel.__table__, "m_", "new_model"),  # type: ignore[attr-defined]
    (TrainingJob.__table__, "j_", "new_job"),  # type: ignore[attr-defined]
    (JobEvent.__table__, "e_", "queued"),  # type: ignore[attr-defined]
)


@functools.lru_cache(maxsize=64)
def _insert_new_job(shape: tuple[tuple[str, ...], ...]) -> Executable:
    """The statement for rows with these columns set, built once: building and keying a
    statement of some forty values costs more CPU than running it."""
    inserts = [
        insert(table)
        .values({name: bindparam(prefix + name, type_=table.c[name].type) for name in names})
        .returning(literal_column("1"))
        .cte(cte_name)
        for (table, prefix, cte_name), names in zip(_NEW_JOB_ROWS, shape, strict=True)
    ]
    # Foreign keys are checked at the end of the statement, when all three rows exist; a
    # NOTIFY is sent when the statement's transaction commits.
    wake = [
        func.pg_notify(literal_column(f"'{channel}'"), literal_column("''"))
        for channel in (JOBS_CHANNEL, EVENTS_CHANNEL)
    ]
    return select(*wake).add_cte(*inserts)


def _queued(session: Session, job: TrainingJob) -> None:
    add_event(session, job_id=job.id, kind=QUEUED_KIND, stage=JOB_STAGE, message="queued")
    notify(session, JOBS_CHANNEL)


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
        team_id=old.team_id,
        enterprise_id=old.enterprise_id,
        ttl_seconds=old.ttl_seconds,
        time_budget_seconds=old.time_budget_seconds,
        origin=origin or old.origin,
    )
    session.add(job)
    session.flush()
    _queued(session, job)
    return job


def get_job(session: Session, *, job_id: str) -> TrainingJob | None:
    return session.get(TrainingJob, job_id)


def get_model(session: Session, *, model_id: str) -> AiModel | None:
    return session.get(AiModel, model_id)


def find_job(
    session: Session,
    *,
    ref: str,
    min_prefix: int = MIN_ID_PREFIX,
    team_id: str | None = None,
    enterprise_id: str | None = None,
) -> TrainingJob:
    """A job by its full id or an unambiguous prefix of it (people type the short id).

    With a workspace (see `_job_filters`) another workspace's job is not found, exactly as
    an id that names no job: the answer must not tell that it exists.
    """
    ref = parse_job_ref(ref, min_prefix=min_prefix)
    workspace = _job_filters(None, None, None, team_id=team_id, enterprise_id=enterprise_id)
    query = select(TrainingJob).where(*_id_prefix(ref), *workspace)
    jobs = session.exec(query.limit(2)).all()
    if not jobs:
        raise JobLookupError(f"no job has the id {ref}")
    if len(jobs) > 1:
        raise JobLookupError(f"{ref} matches several jobs; type more of the id")
    return jobs[0]


def _id_prefix(ref: str) -> tuple[Any, ...]:
    """The ids that start with `ref`, as a range an index seeks (a LIKE cannot use one:
    SQLite's is case-insensitive, and PostgreSQL's needs the C collation). Ids are
    lowercase hex, so every id that starts with `ref` lies in [ref, ref + "g"); the LIKE
    keeps the answer exact whatever an id holds."""
    column = col(TrainingJob.id)
    return column >= ref, column < ref + "g", column.startswith(ref)


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
    team_id: str | None = None,
    enterprise_id: str | None = None,
) -> list[TrainingJob]:
    """Newest first (ties by id, descending: the index's order read backwards, so the
    newest `limit` come off the index with no sort); a workspace as in `_job_filters`."""
    filters = _job_filters(
        channel_id, requested_by, statuses, team_id=team_id, enterprise_id=enterprise_id
    )
    query = select(TrainingJob).where(*filters)
    newest = (col(TrainingJob.created_at).desc(), col(TrainingJob.id).desc())
    return list(session.exec(query.order_by(*newest).limit(limit)).all())


def model_names(session: Session, *, model_ids: Iterable[str]) -> dict[str, str]:
    """The names of these models, in one query (a page of jobs shows each job's model)."""
    wanted = sorted(set(model_ids))
    if not wanted:
        return {}
    query = select(AiModel.id, AiModel.name).where(col(AiModel.id).in_(wanted))
    return {model_id: name for model_id, name in session.exec(query).all()}


def count_jobs(
    session: Session,
    *,
    channel_id: str | None = None,
    requested_by: str | None = None,
    statuses: Iterable[JobStatus] | None = None,
    team_id: str | None = None,
    enterprise_id: str | None = None,
) -> int:
    """How many jobs `list_jobs` would find without its limit."""
    query = select(func.count()).select_from(TrainingJob)
    filters = _job_filters(
        channel_id, requested_by, statuses, team_id=team_id, enterprise_id=enterprise_id
    )
    query = query.where(*filters)
    return int(session.exec(query).one())


def _job_filters(
    channel_id: str | None,
    requested_by: str | None,
    statuses: Iterable[JobStatus] | None,
    *,
    team_id: str | None = None,
    enterprise_id: str | None = None,
) -> list[Any]:
    """A workspace is its team: team ids are unique across Slack, Enterprise Grid included,
    and a workspace that joins an org later keeps its id (so `enterprise_id` is not
    compared then). Without a team, an Enterprise Grid org-wide install is the tenant: every
    job of the org. Neither: no workspace filter (the CLI, the operator)."""
    filters: list[Any] = []
    if team_id is not None:
        filters.append(TrainingJob.team_id == team_id)
    elif enterprise_id is not None:
        filters.append(TrainingJob.enterprise_id == enterprise_id)
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
    owner: str | None = None,
) -> TrainingJob:
    """Moves a job along the state machine, as a compare-and-set on the status it was read
    in and, with `owner`, on the worker holding it. Raises IllegalTransition for a move the
    state machine forbids, NotHeld when `owner` no longer holds the job.

    When another process moves the job between the read and the write (SQLite has no row
    lock; a worker moves a running job on), the move is decided again on the new status:
    a cancel of a running job is never refused because the job just changed stage."""
    for _ in range(TRANSITION_ATTEMPTS):
        job = _require(session, job_id, for_update=True)
        if owner is not None and job.worker_id != owner:
            raise NotHeld(job_id)
        current = job.job_status
        check_transition(current, to)
        now = at or utcnow()
        if _compare_and_set_status(session, job, current, to, now, error=error, owner=owner):
            session.refresh(job)
            if to in TERMINAL and to != JobStatus.FAILED:
                model = session.get(AiModel, job.model_id)
                if model is not None and model.deployed_url == job.deployment_url:
                    model.deployed_url = None  # the app is gone; the job keeps its URL
                    model.updated_at = now
                    session.add(model)
            session.flush()
            return job
    session.refresh(job)
    raise IllegalTransition(job.job_status, to)


TRANSITION_ATTEMPTS = 5


def _compare_and_set_status(
    session: Session,
    job: TrainingJob,
    current: JobStatus,
    to: JobStatus,
    now: datetime,
    *,
    error: str | None,
    owner: str | None,
) -> bool:
    values: dict[str, Any] = {"status": to.value, "updated_at": now}
    if to in RUNNING_STAGES:
        values["stage"] = STATUS_STAGE[to].value
        values["started_at"] = job.started_at or now
    if to == JobStatus.LIVE:
        values["live_at"] = now
    if to in TERMINAL or to == JobStatus.LIVE:
        values["finished_at"] = job.finished_at or now
    if to in TERMINAL:
        values["worker_id"] = None  # an ended job needs no worker
        values["lease_expires_at"] = None
    if error is not None:
        values["error"] = error
    conditions = [col(TrainingJob.id) == job.id, col(TrainingJob.status) == current.value]
    if owner is not None:
        conditions.append(col(TrainingJob.worker_id) == owner)
    result = session.execute(
        update(TrainingJob)
        .where(*conditions)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


def mark_live(
    session: Session, *, job_id: str, url: str, expires_at: datetime, owner: str | None = None
) -> TrainingJob:
    job = transition(session, job_id=job_id, to=JobStatus.LIVE, owner=owner)
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


def record_extension(session: Session, *, job_id: str, expires_at: datetime) -> TrainingJob:
    """A live app's new end; its expiry notice is due again before that end. Raises
    IllegalTransition when the app stopped meanwhile."""
    result = session.execute(
        update(TrainingJob)
        .where(col(TrainingJob.id) == job_id, col(TrainingJob.status) == JobStatus.LIVE.value)
        .values(expires_at=expires_at, expiry_notice_at=None, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    job = _require(session, job_id)
    session.refresh(job)
    if not getattr(result, "rowcount", 0):
        raise IllegalTransition(job.job_status, JobStatus.LIVE)
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
        "expiry_notice_at",
    }
)


def update_job(
    session: Session, *, job_id: str, owner: str | None = None, **fields: Any
) -> TrainingJob:
    """Sets recorded facts about a job. Status changes go through `transition` instead.
    With `owner`, only while that worker holds the job (else NotHeld)."""
    unknown = set(fields) - UPDATABLE_FIELDS
    if unknown:
        raise ValueError(f"not updatable here: {sorted(unknown)}")
    job = _require(session, job_id, for_update=True)
    if owner is not None and job.worker_id != owner:
        raise NotHeld(job_id)
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
    notify(session, EVENTS_CHANNEL)
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
    query = select(JobEvent).where(JobEvent.job_id == job_id)
    if after_id:
        # Only when asked: "id > 0" reads to a planner as a range over the primary key, a
        # walk of every event, which it may take instead of the seek by job.
        query = query.where(col(JobEvent.id) > after_id)
    if kinds is not None:
        query = query.where(col(JobEvent.kind).in_(list(kinds)))
    query = query.order_by(col(JobEvent.id))
    if limit is not None:
        query = query.limit(limit)
    return list(session.exec(query).all())


def events_of_jobs(
    session: Session, *, job_ids: Iterable[str], kinds: Iterable[str] | None = None
) -> dict[str, list[JobEvent]]:
    """Each job's events in the order they happened, in one query for a page of jobs."""
    wanted = sorted(set(job_ids))
    found: dict[str, list[JobEvent]] = {job_id: [] for job_id in wanted}
    if not wanted:
        return found
    query = select(JobEvent).where(col(JobEvent.job_id).in_(wanted))
    if kinds is not None:
        query = query.where(col(JobEvent.kind).in_(list(kinds)))
    for event in session.exec(query.order_by(col(JobEvent.job_id), col(JobEvent.id))).all():
        found[event.job_id].append(event)
    return found


def _require(session: Session, job_id: str, *, for_update: bool = False) -> TrainingJob:
    query = select(TrainingJob).where(TrainingJob.id == job_id)
    if for_update:
        # PostgreSQL locks the row; SQLite ignores it. Read it afresh even when the session
        # holds it already: a caller decides on this read, not on what it saw before.
        query = query.with_for_update().execution_options(populate_existing=True)
    job = session.exec(query).first()
    if job is None:
        raise JobLookupError(f"no job has the id {job_id[:SHORT_ID_LENGTH]}")
    return job
