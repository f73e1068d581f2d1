"""The use cases every entry point calls, against an in-memory SQLite and a fake worker."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool
from sqlmodel import create_engine

from pipeline.errors import SandboxError
from pipeline.service import (
    ActionRefused,
    AppUnreachable,
    InvalidJobRef,
    JobNotFound,
    JobRequest,
    JobService,
    LifetimeRefused,
)
from storage import queries
from storage.db import session_scope, upgrade
from storage.models import TrainingJob
from storage.states import RUNNING_STAGES, JobStatus


class FakeWorker:
    """Does what pipeline/worker.py's JobWorker does to the job row, and runs nothing."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.submitted: list[str] = []
        self.apps: dict[str, datetime | Exception] = {}  # live apps this "process" holds

    def submit(self, job_id: str) -> None:
        self.submitted.append(job_id)

    def cancel(self, job_id: str) -> TrainingJob:
        # JobWorker.cancel: one transition, which raises IllegalTransition for an ended job.
        with session_scope(self.engine) as session:
            job = queries.transition(session, job_id=job_id, to=JobStatus.CANCELLED)
        self.apps.pop(job_id, None)
        return job

    def extend(self, job_id: str, seconds: int) -> datetime | None:
        # JobWorker.extend: None unless this process holds the sandbox; a sandbox's extend
        # returns when it will really stop and may raise SandboxError (pipeline/sandbox/base.py).
        held = self.apps.get(job_id)
        if held is None:
            return None
        if isinstance(held, Exception):
            raise held
        asked = datetime.now(UTC) + timedelta(seconds=seconds)
        ends = min(asked, held)  # a provider that caps the sandbox's life at `held`
        with session_scope(self.engine) as session:
            queries.update_job(session, job_id=job_id, expires_at=ends)
        return ends


class Announced:
    def __init__(self) -> None:
        self.said: list[tuple[str, ...]] = []

    def job_queued(self, job_id: str) -> None:
        self.said.append(("queued", job_id))

    def job_cancelled(self, job_id: str, by: str) -> None:
        self.said.append(("cancelled", job_id, by))


@pytest.fixture
def engine() -> Iterator[Engine]:
    # One connection shared by every session: each new connection to "sqlite://" would be
    # a new, empty database.
    engine = create_engine(
        "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
    )
    event.listen(engine, "connect", lambda conn, _: conn.execute("PRAGMA foreign_keys=ON"))
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def worker(engine: Engine) -> FakeWorker:
    return FakeWorker(engine)


@pytest.fixture
def announced() -> Announced:
    return Announced()


def make_service(engine: Engine, worker: FakeWorker, **overrides: Any) -> JobService:
    fields: dict[str, Any] = {
        "engine": engine,
        "worker": worker,
        "provider": "e2b",
        "max_lifetime": 3600,
        "default_lifetime": 1800,
    }
    return JobService(**{**fields, **overrides})


@pytest.fixture
def jobs(engine: Engine, worker: FakeWorker, announced: Announced) -> JobService:
    return make_service(engine, worker, announcer=announced)


def request(**overrides: Any) -> JobRequest:
    fields: dict[str, Any] = {
        "name": "iris",
        "dataset_source": "iris",
        "requested_by": "U1",
        "origin": "slack",
        "channel_id": "C1",
    }
    return JobRequest(**{**fields, **overrides})


def set_status(engine: Engine, job_id: str, *path: JobStatus) -> None:
    with session_scope(engine) as session:
        for status in path:
            queries.transition(session, job_id=job_id, to=status)


def make_live(engine: Engine, job_id: str) -> None:
    set_status(engine, job_id, *RUNNING_STAGES)  # the chain a run walks, in order
    with session_scope(engine) as session:
        queries.mark_live(
            session,
            job_id=job_id,
            url="https://app.example/",
            expires_at=datetime.now(UTC) + timedelta(minutes=30),
        )


# -- submit ---------------------------------------------------------------------------------


def test_submit_records_announces_then_queues(
    jobs: JobService, worker: FakeWorker, announced: Announced
) -> None:
    submitted = jobs.submit(request(ttl_seconds=600))
    assert submitted.created and submitted.job.ttl_seconds == 600
    assert announced.said == [("queued", submitted.job.id)]
    assert worker.submitted == [submitted.job.id]


def test_the_same_request_key_is_one_job(jobs: JobService, worker: FakeWorker) -> None:
    first = jobs.submit(request(request_key="k1"))
    again = jobs.submit(request(request_key="k1"))
    assert not again.created and again.job.id == first.job.id
    assert worker.submitted == [first.job.id]


def test_a_lifetime_past_the_providers_cap_is_refused_before_any_job(
    jobs: JobService, worker: FakeWorker, engine: Engine
) -> None:
    with pytest.raises(LifetimeRefused, match="at most 3600 seconds") as refused:
        jobs.submit(request(ttl_seconds=7200))
    assert refused.value.most == 3600
    with pytest.raises(LifetimeRefused, match="at least 30 seconds"):
        jobs.submit(request(ttl_seconds=5))
    assert worker.submitted == [] and jobs.list(limit=5).total == 0


def test_the_default_lifetime_is_capped_to_the_provider(engine: Engine, worker: FakeWorker) -> None:
    jobs = make_service(engine, worker, default_lifetime=86_400, max_lifetime=3600)
    submitted = jobs.submit(request())
    assert submitted.job.ttl_seconds == 3600 and submitted.lifetime.capped_from == 86_400
    unlimited = make_service(engine, worker, max_lifetime=None)
    assert unlimited.submit(request(ttl_seconds=10**6)).job.ttl_seconds == 10**6


# -- cancel and retry -----------------------------------------------------------------------


def test_cancel_says_who_and_refuses_a_job_that_ended(
    jobs: JobService, announced: Announced, engine: Engine
) -> None:
    job = jobs.submit(request()).job
    cancelled = jobs.cancel(job.short_id, by="U2")
    assert cancelled.job_status == JobStatus.CANCELLED
    assert announced.said[-1] == ("cancelled", job.id, "U2")
    with pytest.raises(ActionRefused, match=f"job {job.short_id} is cancelled; there is nothing"):
        jobs.cancel(job.id, by="U2")


def test_cancel_stops_a_live_app(jobs: JobService, worker: FakeWorker, engine: Engine) -> None:
    job = jobs.submit(request()).job
    make_live(engine, job.id)
    worker.apps[job.id] = datetime.now(UTC) + timedelta(hours=1)
    assert jobs.cancel(job.id, by="U1").job_status == JobStatus.CANCELLED
    assert job.id not in worker.apps


def test_retry_queues_a_new_attempt_and_refuses_a_running_job(
    jobs: JobService, worker: FakeWorker, engine: Engine
) -> None:
    job = jobs.submit(request(origin="cli")).job
    with pytest.raises(ActionRefused, match="only failed, cancelled or expired"):
        jobs.retry(job.id, by="U2", origin="slack")
    jobs.cancel(job.id, by="U1")
    again = jobs.retry(job.id, by="U2", origin="slack")
    assert again.attempt == 2 and again.retry_of == job.id
    assert again.requested_by == "U2" and again.origin == "slack"
    assert worker.submitted[-1] == again.id


# -- extend -----------------------------------------------------------------------------------


def test_extend_records_the_end_the_provider_reports(
    jobs: JobService, worker: FakeWorker, engine: Engine
) -> None:
    job = jobs.submit(request()).job
    make_live(engine, job.id)
    cap_end = datetime.now(UTC) + timedelta(minutes=40)
    worker.apps[job.id] = cap_end
    extended = jobs.extend(job.short_id, hours=1)
    assert extended.expires_at == cap_end and extended.cut_short
    assert extended.job.expires_at is not None
    assert abs((extended.job.expires_at - cap_end).total_seconds()) < 1
    worker.apps[job.id] = datetime.now(UTC) + timedelta(days=1)
    assert not jobs.extend(job.short_id, hours=0.5).cut_short


def test_extend_within_the_providers_cap_only(jobs: JobService, engine: Engine) -> None:
    job = jobs.submit(request()).job
    make_live(engine, job.id)
    with pytest.raises(LifetimeRefused, match="2 hours is too long.*at most 1 hour"):
        jobs.extend(job.id, hours=2)
    for nonsense in (0, -1, float("nan"), float("inf")):
        with pytest.raises(LifetimeRefused, match="how many hours"):
            jobs.extend(job.id, hours=nonsense)


def test_extend_refuses_a_job_without_a_live_app(jobs: JobService) -> None:
    job = jobs.submit(request()).job
    with pytest.raises(ActionRefused, match="is queued; only a live app is extended"):
        jobs.extend(job.id, hours=1)


def test_extend_says_plainly_when_the_app_is_held_by_another_process(
    jobs: JobService, worker: FakeWorker, engine: Engine
) -> None:
    job = jobs.submit(request()).job
    make_live(engine, job.id)
    with pytest.raises(AppUnreachable, match="runs in another TrainBot process"):
        jobs.extend(job.id, hours=1)
    worker.apps[job.id] = SandboxError("The sandbox is gone.")
    with pytest.raises(ActionRefused, match="was not extended: The sandbox is gone"):
        jobs.extend(job.id, hours=1)


# -- status, list, logs -----------------------------------------------------------------------


def test_status_finds_by_prefix_and_checks_what_was_typed(
    engine: Engine, worker: FakeWorker
) -> None:
    jobs = make_service(engine, worker)
    job = jobs.submit(request()).job
    found = jobs.status(job.id[:4])
    assert found.job.id == job.id and found.model_name == "iris"
    with pytest.raises(InvalidJobRef, match="is not a job id"):
        jobs.status("x' OR 1=1")
    with pytest.raises(JobNotFound, match="no job has the id"):
        jobs.status("0" * 8 if not job.id.startswith("0") else "f" * 8)
    # Slack asks for the whole short id.
    strict = make_service(engine, worker, min_prefix=8)
    with pytest.raises(InvalidJobRef):
        strict.status(job.id[:4])
    assert strict.status(job.short_id).job.id == job.id


def test_a_reader_answers_without_a_worker(engine: Engine, worker: FakeWorker) -> None:
    job = make_service(engine, worker).submit(request()).job
    reader = JobService.reader(engine)
    assert reader.status(job.short_id).job.id == job.id
    with pytest.raises(RuntimeError, match="only reads"):
        reader.cancel(job.id, by="cli")


def test_list_is_newest_first_with_the_total(jobs: JobService) -> None:
    ids = [jobs.submit(request(name=f"m{i}", channel_id="C9")).job.id for i in range(3)]
    jobs.submit(request(channel_id="C2", requested_by="U7"))
    page = jobs.list(channel_id="C9", limit=2)
    assert page.total == 3
    assert [item.job.id for item in page.items] == ids[::-1][:2]
    assert [item.model_name for item in page.items] == ["m2", "m1"]
    assert jobs.list(requested_by="U7", limit=5).total == 1
    latest = jobs.latest(requested_by="U7")
    assert latest is not None and latest.job.channel_id == "C2"
    assert jobs.latest(requested_by="nobody") is None


def test_logs_hold_every_event_and_the_summary_leaves_output_out(
    jobs: JobService, engine: Engine
) -> None:
    job = jobs.submit(request()).job
    with session_scope(engine) as session:
        queries.add_event(session, job_id=job.id, kind="started", stage="dataset", message="go")
        queries.add_event(session, job_id=job.id, kind="log", stage="train", message="epoch 1")
    log = jobs.logs(job.short_id)
    assert [e.kind for e in log.events] == ["started", "log"]
    assert [e.kind for e in log.detail.events] == ["started"]
