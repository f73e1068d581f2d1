"""The use cases every entry point calls, against an in-memory SQLite, a fake worker and a
fake sandbox provider."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from pipeline.sandbox.base import SandboxGone
from pipeline.service import (
    ActionRefused,
    InvalidJobRef,
    JobNotFound,
    JobRequest,
    JobService,
    LifetimeRefused,
)
from storage import queries
from storage.db import session_scope
from storage.states import RUNNING_STAGES, JobStatus
from tests.support.databases import in_memory_engine


class FakeWorker:
    """The worker of this process, as the service tells it (pipeline/worker.py JobWorker)."""

    def __init__(self) -> None:
        self.wakes = 0
        self.ended: list[str] = []

    def wake(self) -> None:
        self.wakes += 1

    def job_ended(self, job_id: str) -> None:
        self.ended.append(job_id)


class FakeSandboxes:
    """A provider that caps an app's life at `cap_end` (as E2B does) and reaches apps by id
    from any process (pipeline/sandbox/base.py SandboxProvider.extend / kill)."""

    name = "e2b"
    max_lifetime: int | None = 3600
    survives_worker = True

    def __init__(self) -> None:
        self.cap_end: datetime | None = None
        self.gone: set[str] = set()
        self.killed: list[str] = []
        self.kill_seen = threading.Event()

    def extend(self, sandbox_id: str, seconds: int) -> datetime:
        if sandbox_id in self.gone:
            raise SandboxGone("the app is gone: its E2B sandbox expired or was killed")
        asked = datetime.now(UTC) + timedelta(seconds=seconds)
        return min(asked, self.cap_end) if self.cap_end else asked

    def kill(self, sandbox_id: str) -> bool:
        self.killed.append(sandbox_id)
        self.kill_seen.set()
        return True


@pytest.fixture
def engine() -> Iterator[Engine]:
    yield from in_memory_engine()


@pytest.fixture
def worker() -> FakeWorker:
    return FakeWorker()


@pytest.fixture
def sandboxes() -> FakeSandboxes:
    return FakeSandboxes()


def make_service(
    engine: Engine, worker: FakeWorker, sandboxes: FakeSandboxes | None = None, **overrides: Any
) -> JobService:
    fields: dict[str, Any] = {
        "engine": engine,
        "sandboxes": sandboxes or FakeSandboxes(),
        "local": worker,
        "default_lifetime": 1800,
    }
    return JobService(**{**fields, **overrides})


@pytest.fixture
def jobs(engine: Engine, worker: FakeWorker, sandboxes: FakeSandboxes) -> JobService:
    return make_service(engine, worker, sandboxes)


def kinds(engine: Engine, job_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    with session_scope(engine) as session:
        events = queries.list_events(session, job_id=job_id)
        return [(e.kind, e.message, e.data) for e in events]


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


def make_live(engine: Engine, job_id: str, *, held_by: str | None = None) -> None:
    set_status(engine, job_id, *RUNNING_STAGES)  # the chain a run walks, in order
    with session_scope(engine) as session:
        queries.update_job(session, job_id=job_id, sandbox_id=f"sbx-{job_id[:8]}")
        job = queries.mark_live(
            session,
            job_id=job_id,
            url="https://app.example/",
            expires_at=datetime.now(UTC) + timedelta(minutes=30),
        )
        job.worker_id = held_by
        session.add(job)


# -- submit ---------------------------------------------------------------------------------


def test_submit_records_the_job_with_its_queued_event_and_wakes_the_worker(
    jobs: JobService, worker: FakeWorker, engine: Engine
) -> None:
    submitted = jobs.submit(request(ttl_seconds=600, team_id="T1", enterprise_id="E1"))
    job = submitted.job
    assert submitted.created and job.ttl_seconds == 600
    assert (job.team_id, job.enterprise_id, job.worker_id) == ("T1", "E1", None)
    assert kinds(engine, job.id) == [("queued", "queued", {})]  # the card is posted on it
    assert worker.wakes == 1


def test_the_same_request_key_is_one_job(jobs: JobService, worker: FakeWorker) -> None:
    first = jobs.submit(request(request_key="k1"))
    again = jobs.submit(request(request_key="k1"))
    assert not again.created and again.job.id == first.job.id
    assert worker.wakes == 1


def test_a_lifetime_past_the_providers_cap_is_refused_before_any_job(
    jobs: JobService, worker: FakeWorker, engine: Engine
) -> None:
    with pytest.raises(LifetimeRefused, match="at most 3600 seconds") as refused:
        jobs.submit(request(ttl_seconds=7200))
    assert refused.value.most == 3600
    with pytest.raises(LifetimeRefused, match="at least 30 seconds"):
        jobs.submit(request(ttl_seconds=5))
    assert worker.wakes == 0 and jobs.list(limit=5).total == 0


def test_the_default_lifetime_is_capped_to_the_provider(engine: Engine, worker: FakeWorker) -> None:
    capped = FakeSandboxes()
    jobs = make_service(engine, worker, capped, default_lifetime=86_400)
    submitted = jobs.submit(request())
    assert submitted.job.ttl_seconds == 3600 and submitted.lifetime.capped_from == 86_400
    unlimited = FakeSandboxes()
    unlimited.max_lifetime = None
    big = make_service(engine, worker, unlimited).submit(request(ttl_seconds=10**6))
    assert big.job.ttl_seconds == 10**6


# -- cancel and retry -----------------------------------------------------------------------


def test_cancel_records_who_in_one_event_and_refuses_a_job_that_ended(
    jobs: JobService, worker: FakeWorker, engine: Engine
) -> None:
    job = jobs.submit(request()).job
    cancelled = jobs.cancel(job.short_id, by="U2")
    assert cancelled.job_status == JobStatus.CANCELLED
    assert kinds(engine, job.id)[-1] == (
        "finished",
        "cancelled",
        {"status": "cancelled", "by": "U2"},
    )
    assert worker.ended == [job.id]  # this process's worker stops it at once
    with pytest.raises(ActionRefused, match=f"job {job.short_id} is cancelled; there is nothing"):
        jobs.cancel(job.id, by="U2")
    assert len([k for k in kinds(engine, job.id) if k[0] == "finished"]) == 1


def test_cancel_stops_an_app_that_outlives_its_worker_from_here(
    jobs: JobService, sandboxes: FakeSandboxes, engine: Engine
) -> None:
    job = jobs.submit(request()).job
    make_live(engine, job.id)
    assert jobs.cancel(job.id, by="U1").job_status == JobStatus.CANCELLED
    assert sandboxes.kill_seen.wait(5), "the E2B sandbox was never killed"
    assert sandboxes.killed == [f"sbx-{job.id[:8]}"]
    assert kinds(engine, job.id)[-1][1] == "the live app was stopped"


def test_cancel_leaves_a_held_local_app_to_the_worker_that_serves_it(
    engine: Engine, worker: FakeWorker
) -> None:
    local = FakeSandboxes()
    local.survives_worker = False
    jobs = make_service(engine, worker, local)
    job = jobs.submit(request()).job
    make_live(engine, job.id, held_by="host:1:abc")
    jobs.cancel(job.id, by="U1")
    assert not local.kill_seen.wait(0.3)  # its worker sees the row and stops its own app
    with session_scope(engine) as session:
        assert queries.get_job(session, job_id=job.id).worker_id is None  # type: ignore[union-attr]


def test_retry_queues_a_new_attempt_and_refuses_a_running_job(
    jobs: JobService, worker: FakeWorker, engine: Engine
) -> None:
    job = jobs.submit(request(origin="cli", team_id="T1")).job
    with pytest.raises(ActionRefused, match="only failed, cancelled or expired"):
        jobs.retry(job.id, by="U2", origin="slack")
    jobs.cancel(job.id, by="U1")
    again = jobs.retry(job.id, by="U2", origin="slack")
    assert again.attempt == 2 and again.retry_of == job.id and again.team_id == "T1"
    assert again.requested_by == "U2" and again.origin == "slack"
    assert kinds(engine, again.id) == [("queued", "queued", {})]
    assert worker.wakes == 2


# -- extend -----------------------------------------------------------------------------------


def test_extend_records_the_end_the_provider_reports_from_any_process(
    jobs: JobService, sandboxes: FakeSandboxes, engine: Engine
) -> None:
    job = jobs.submit(request()).job
    make_live(engine, job.id)
    with session_scope(engine) as session:
        queries.update_job(session, job_id=job.id, expiry_notice_at=datetime.now(UTC))
    cap_end = datetime.now(UTC) + timedelta(minutes=40)
    sandboxes.cap_end = cap_end
    extended = jobs.extend(job.short_id, hours=1)
    assert extended.expires_at == cap_end and extended.cut_short
    assert extended.job.expires_at is not None
    assert abs((extended.job.expires_at - cap_end).total_seconds()) < 1
    assert extended.job.expiry_notice_at is None  # a notice is due again before the new end
    assert kinds(engine, job.id)[-1][2] == {"expires_at": cap_end.isoformat()}
    sandboxes.cap_end = None
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


def test_extend_says_plainly_when_the_app_is_gone(
    jobs: JobService, sandboxes: FakeSandboxes, engine: Engine
) -> None:
    job = jobs.submit(request()).job
    make_live(engine, job.id)
    sandboxes.gone.add(f"sbx-{job.id[:8]}")
    with pytest.raises(ActionRefused, match="was not extended: the app is gone"):
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
    assert [e.kind for e in log.events] == ["queued", "started", "log"]
    assert [e.kind for e in log.detail.events] == ["started"]
