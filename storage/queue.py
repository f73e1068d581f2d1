"""The job queue is the jobs table: claims, leases, takeovers, hand-backs and sweeps.

Every worker process claims queued jobs for itself (procrastinate's `fetch_job` is the model):
one claim at a time across all processes (an advisory lock on PostgreSQL, a file lock beside
the SQLite file), so the concurrency limits hold; on PostgreSQL the candidates are read
`FOR UPDATE SKIP LOCKED`, so a row another transaction holds (a cancel) is passed over
instead of waited on. A claim writes the worker's id and a lease the worker renews while it
holds the job. Every later change by a worker is a compare-and-set on that owner: a worker
that lost its job (its lease ran out and another took it) finds out as `NotHeld`, never as a
cancel.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, text, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from storage.db import session_scope
from storage.locks import CLAIM_LOCK_KEY, claim_file_lock
from storage.models import TrainingJob, utcnow
from storage.notify import JOBS_CHANNEL, notify
from storage.queries import JOB_STAGE, add_event
from storage.states import RUNNING_STAGES, JobStatus, NotHeld

# Jobs a worker holds: claimed (still queued), running, or serving a local app.
HELD = (JobStatus.QUEUED, *RUNNING_STAGES, JobStatus.LIVE)
_RUNNING = [s.value for s in RUNNING_STAGES]
_HELD_VALUES = [s.value for s in HELD]
_UNCLAIMED = (
    col(TrainingJob.status) == JobStatus.QUEUED.value,
    col(TrainingJob.worker_id).is_(None),
)
_CLAIMABLE_BACK = [JobStatus.QUEUED.value, *_RUNNING]
CANDIDATES_PER_CLAIM = 200


@dataclass(frozen=True)
class Limits:
    """Jobs running at once across all workers (0 or None: no limit)."""

    per_workspace: int = 0
    per_user: int = 0
    sandboxes: int | None = None  # the provider's sandboxes: running jobs and live apps
    provider: str = ""  # whose sandboxes count against `sandboxes`


def claim_jobs(
    engine: Engine,
    *,
    worker_id: str,
    count: int,
    lease_seconds: float,
    limits: Limits = Limits(),
    only: Iterable[str] | None = None,
) -> list[str]:
    """Claims up to `count` queued jobs, oldest first, that fit within `limits` (and, with
    `only`, are among those ids), in a transaction of its own: the lock must cover its
    commit. Returns their ids."""
    if count <= 0:
        return []
    with claim_file_lock(engine), session_scope(engine) as session:
        if engine.dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CLAIM_LOCK_KEY})
        query = (
            select(TrainingJob)
            .where(*_UNCLAIMED)
            .order_by(col(TrainingJob.created_at), col(TrainingJob.id))
            .limit(CANDIDATES_PER_CLAIM)
        )
        if only is not None:
            query = query.where(col(TrainingJob.id).in_(list(only)))
        if engine.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        candidates = list(session.exec(query).all())
        if not candidates:
            return []
        usage = _Usage.read(session, limits)
        now = utcnow()
        claimed: list[str] = []
        for job in candidates:
            if len(claimed) >= count:
                break
            reason = usage.refusal(job, limits)
            if reason is not None:
                if job.wait_reason != reason and _set_where(
                    session, job.id, _UNCLAIMED, wait_reason=reason
                ):
                    # An event, so its card says so now rather than at its next refresh.
                    add_event(
                        session,
                        job_id=job.id,
                        kind="progress",
                        stage=JOB_STAGE,
                        message=f"waiting: {reason}",
                    )
                continue
            won = _set_where(
                session,
                job.id,
                _UNCLAIMED,
                worker_id=worker_id,
                lease_expires_at=now + timedelta(seconds=lease_seconds),
                runs=TrainingJob.runs + 1,
                wait_reason=None,
                updated_at=now,
            )
            if won:
                usage.add(job)
                claimed.append(job.id)
        return claimed


__all__ = ["NotHeld"]


def _set_where(session: Session, job_id: str, conditions: tuple[Any, ...], **values: Any) -> bool:
    """One compare-and-set UPDATE: True when the row still matched `conditions`."""
    result = session.execute(
        update(TrainingJob)
        .where(col(TrainingJob.id) == job_id, *conditions)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


def queue_position(session: Session, *, job: TrainingJob) -> int:
    """How many queued jobs, not yet claimed, were queued before this one."""
    query = (
        select(func.count())
        .select_from(TrainingJob)
        .where(
            col(TrainingJob.status) == JobStatus.QUEUED.value,
            col(TrainingJob.worker_id).is_(None),
            or_(
                col(TrainingJob.created_at) < job.created_at,
                (col(TrainingJob.created_at) == job.created_at) & (col(TrainingJob.id) < job.id),
            ),
        )
    )
    return int(session.exec(query).one())


def renew_leases(
    session: Session, *, worker_id: str, job_ids: Iterable[str], lease_seconds: float
) -> set[str]:
    """Extends this worker's lease on each job it still holds; returns those ids. One
    statement for all of them (a worker may hold hundreds of remote jobs)."""
    ids = list(job_ids)
    if not ids:
        return set()
    result = session.execute(
        update(TrainingJob)
        .where(col(TrainingJob.id).in_(ids), *_held_by(worker_id))
        .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
        .returning(col(TrainingJob.id))
        .execution_options(synchronize_session=False)
    )
    return set(result.scalars().all())


def held_jobs(session: Session, *, worker_id: str, job_ids: Iterable[str]) -> set[str]:
    """Which of `job_ids` this worker still holds (not cancelled, not taken over): the frequent
    check its running jobs make, for all of them in one query (by primary key, so its cost
    does not grow with the table)."""
    ids = list(job_ids)
    if not ids:
        return set()
    query = select(TrainingJob.id).where(col(TrainingJob.id).in_(ids), *_held_by(worker_id))
    return set(session.exec(query).all())


def release(session: Session, *, job_id: str, worker_id: str) -> bool:
    """Lets go of a job that no longer needs a worker (its app lives on by itself)."""
    return _set_where(
        session,
        job_id,
        (col(TrainingJob.worker_id) == worker_id,),
        worker_id=None,
        lease_expires_at=None,
    )


def hand_back(session: Session, *, job_id: str, worker_id: str, count_run: bool) -> bool:
    """Back to the queue for any worker, if this worker still holds it and it is running or
    claimed. `count_run` False: this run does not count against the job's runs (a deploy
    stopped it, not a crash)."""
    won = _set_where(
        session,
        job_id,
        (col(TrainingJob.worker_id) == worker_id, col(TrainingJob.status).in_(_CLAIMABLE_BACK)),
        status=JobStatus.QUEUED.value,
        worker_id=None,
        lease_expires_at=None,
        # A held job was claimed, so runs >= 1.
        runs=TrainingJob.runs if count_run else TrainingJob.runs - 1,
        updated_at=utcnow(),
    )
    if won:
        notify(session, JOBS_CHANNEL)
    return won


def stalled_jobs(session: Session, *, limit: int = 50) -> list[TrainingJob]:
    """Held jobs whose worker stopped renewing its lease, and running jobs nobody holds
    (from before workers held leases). Their holder is presumed dead."""
    now = utcnow()
    query = (
        select(TrainingJob)
        .where(
            or_(
                col(TrainingJob.worker_id).is_not(None) & (col(TrainingJob.lease_expires_at) < now),
                col(TrainingJob.worker_id).is_(None) & col(TrainingJob.status).in_(_RUNNING),
            ),
            col(TrainingJob.status).in_([s.value for s in HELD]),
        )
        .order_by(col(TrainingJob.lease_expires_at))
        .limit(limit)
    )
    return list(session.exec(query).all())


def take_over(session: Session, *, seen: TrainingJob, worker_id: str, lease_seconds: float) -> bool:
    """Takes a stalled job for this worker if it is still as `seen` (compare-and-set), so
    two workers that find the same stalled job never both act on it."""
    now = utcnow()
    owner = (
        col(TrainingJob.worker_id).is_(None)
        if seen.worker_id is None
        else (col(TrainingJob.worker_id) == seen.worker_id)
        & (col(TrainingJob.lease_expires_at) < now)
    )
    return _set_where(
        session,
        seen.id,
        (owner, col(TrainingJob.status) == seen.status),
        worker_id=worker_id,
        lease_expires_at=now + timedelta(seconds=lease_seconds),
    )


def apps_to_stop(
    session: Session, *, now: datetime | None = None, unowned_providers: Iterable[str] = ()
) -> list[TrainingJob]:
    """Live apps past their end, and live apps of providers whose apps die with their worker
    but that no worker holds (from before workers held leases)."""
    now = now or utcnow()
    dying = list(unowned_providers)
    query = select(TrainingJob).where(
        col(TrainingJob.status) == JobStatus.LIVE.value,
        or_(
            col(TrainingJob.expires_at).is_(None),
            col(TrainingJob.expires_at) <= now,
            col(TrainingJob.worker_id).is_(None) & col(TrainingJob.sandbox_provider).in_(dying),
        ),
    )
    return list(session.exec(query).all())


def apps_to_warn(session: Session, *, before: datetime) -> list[TrainingJob]:
    """Live apps that stop before `before` and whose thread has not been told yet."""
    query = select(TrainingJob).where(
        col(TrainingJob.status) == JobStatus.LIVE.value,
        col(TrainingJob.expiry_notice_at).is_(None),
        col(TrainingJob.expires_at) <= before,
    )
    return list(session.exec(query).all())


def mark_expiry_notice(session: Session, *, job_id: str, expires_at: datetime) -> bool:
    """Records that the expiry notice is sent, once (compare-and-set on the end it was for:
    an extend meanwhile moved the end and cleared the mark)."""
    return _set_where(
        session,
        job_id,
        (
            col(TrainingJob.status) == JobStatus.LIVE.value,
            col(TrainingJob.expiry_notice_at).is_(None),
            col(TrainingJob.expires_at) == expires_at,
        ),
        expiry_notice_at=utcnow(),
    )


def _held_by(worker_id: str) -> tuple[Any, ...]:
    return (col(TrainingJob.worker_id) == worker_id, col(TrainingJob.status).in_(_HELD_VALUES))


class _Usage:
    """Running jobs (claimed included) per workspace and per person, and sandboxes in use."""

    def __init__(
        self, teams: dict[str | None, int], users: dict[tuple[str | None, str], int], boxes: int
    ) -> None:
        self.teams = teams
        self.users = users
        self.boxes = boxes

    @classmethod
    def read(cls, session: Session, limits: Limits) -> _Usage:
        running = or_(
            col(TrainingJob.status).in_(_RUNNING),
            and_(
                col(TrainingJob.status) == JobStatus.QUEUED.value,
                col(TrainingJob.worker_id).is_not(None),
            ),
        )
        rows = session.exec(
            select(TrainingJob.team_id, TrainingJob.requested_by, func.count())
            .where(running)
            .group_by(col(TrainingJob.team_id), col(TrainingJob.requested_by))
        ).all()
        teams: dict[str | None, int] = {}
        users: dict[tuple[str | None, str], int] = {}
        total = 0
        for team, user, n in rows:
            teams[team] = teams.get(team, 0) + n
            users[(team, user)] = n
            total += n
        boxes = 0
        if limits.sandboxes:
            live = session.exec(
                select(func.count())
                .select_from(TrainingJob)
                .where(
                    col(TrainingJob.status) == JobStatus.LIVE.value,
                    col(TrainingJob.sandbox_provider) == limits.provider,
                )
            ).one()
            boxes = total + int(live)
        return cls(teams, users, boxes)

    def refusal(self, job: TrainingJob, limits: Limits) -> str | None:
        """Why `job` cannot start now, in words for its card; None when it can. The most
        particular reason first: it is the one its person can do something about."""
        if limits.per_user and job.requested_by:
            if self.users.get((job.team_id, job.requested_by), 0) >= limits.per_user:
                return (
                    f"{limits.per_user} of this person's jobs are running, "
                    "the most that run at once"
                )
        if limits.per_workspace and job.team_id is not None:
            if self.teams.get(job.team_id, 0) >= limits.per_workspace:
                return (
                    f"this workspace already runs {limits.per_workspace} jobs, "
                    "the most it runs at once"
                )
        if limits.sandboxes and self.boxes >= limits.sandboxes:
            return (
                f"all {limits.sandboxes} {limits.provider} sandboxes are in use "
                "(running jobs and live apps)"
            )
        return None

    def add(self, job: TrainingJob) -> None:
        self.teams[job.team_id] = self.teams.get(job.team_id, 0) + 1
        key = (job.team_id, job.requested_by)
        self.users[key] = self.users.get(key, 0) + 1
        self.boxes += 1
