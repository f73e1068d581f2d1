"""A worker's lease renewals and held checks are one statement each for all its jobs
(storage/queue.py renew_leases, held_jobs), on SQLite and PostgreSQL: a worker may hold
hundreds of remote jobs. Each answers for exactly the jobs this worker still holds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import event
from sqlalchemy.engine import Engine

from storage import queries, queue
from storage.db import session_scope
from storage.models import TrainingJob
from storage.states import JobStatus


def _jobs(engine: Engine) -> tuple[str, str, str, str]:
    """Held by w1, held by w1 but cancelled, held by w2, not claimed."""
    with session_scope(engine) as session:
        ids = [
            queries.create_job(session, name="m", dataset_source="iris", requested_by="U1").id
            for _ in range(4)
        ]
    mine, cancelled, theirs, unclaimed = ids
    queue.claim_jobs(engine, worker_id="w1", count=2, lease_seconds=60, only=[mine, cancelled])
    queue.claim_jobs(engine, worker_id="w2", count=1, lease_seconds=60, only=[theirs])
    with session_scope(engine) as session:
        job = session.get(TrainingJob, cancelled)
        assert job is not None
        job.status = JobStatus.CANCELLED.value
        session.add(job)
    return mine, cancelled, theirs, unclaimed


def _lease(engine: Engine, job_id: str) -> datetime | None:
    with session_scope(engine) as session:
        job = session.get(TrainingJob, job_id)
        assert job is not None
        return job.lease_expires_at


def _statements(engine: Engine) -> list[str]:
    seen: list[str] = []
    event.listen(
        engine, "before_cursor_execute", lambda c, cur, statement, *a: seen.append(statement)
    )
    return seen


def test_held_jobs_are_this_workers_and_not_ended(engine: Engine) -> None:
    ids = _jobs(engine)
    seen = _statements(engine)
    with session_scope(engine) as session:
        assert queue.held_jobs(session, worker_id="w1", job_ids=ids) == {ids[0]}
        assert queue.held_jobs(session, worker_id="w1", job_ids=[]) == set()
    assert len([s for s in seen if "training_jobs" in s]) == 1


def test_renewal_extends_only_what_this_worker_holds(engine: Engine) -> None:
    mine, cancelled, theirs, unclaimed = _jobs(engine)
    before = {job_id: _lease(engine, job_id) for job_id in (mine, cancelled, theirs)}
    seen = _statements(engine)
    with session_scope(engine) as session:
        held = queue.renew_leases(
            session, worker_id="w1", job_ids=[mine, cancelled, theirs, unclaimed], lease_seconds=600
        )
    assert held == {mine}
    assert len([s for s in seen if "training_jobs" in s]) == 1
    renewed = _lease(engine, mine)
    assert renewed is not None
    assert renewed.replace(tzinfo=renewed.tzinfo or UTC) > datetime.now(UTC) + timedelta(
        seconds=500
    )
    for job_id in (cancelled, theirs):
        assert _lease(engine, job_id) == before[job_id]
    assert _lease(engine, unclaimed) is None
    with session_scope(engine) as session:
        assert queue.renew_leases(session, worker_id="w1", job_ids=[], lease_seconds=600) == set()
