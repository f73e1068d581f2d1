"""The worker's claims, leases, takeovers, hand-backs and sweeps, with a stand-in runner and
sandbox provider (no pipeline runs) on a SQLite file: every decision the worker makes is a
row change, so these tests read the rows.

The workers run without their loops: each test drives them by hand (`claim`, `renew`,
`sweep`, `drain`) and sees one step at a time. Claimed jobs run in the worker's executor.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from pipeline.cancel import CancelToken
from pipeline.codegen.template import TemplateGenerator
from pipeline.events import RecordingSink
from pipeline.netguard import UrlGuard
from pipeline.runner import PipelineDeps
from pipeline.settings import Settings
from pipeline.worker import HANDED_BACK, JobWorker
from storage import queries, queue
from storage.db import session_scope
from storage.models import TrainingJob
from storage.states import JobStatus, NotHeld

LONG = 3000.0  # seconds: no lease runs out during a test unless the test makes it


@dataclass
class StandInApp:
    id: str
    killed: bool = False

    def kill(self) -> None:
        self.killed = True


@dataclass
class StandInProvider:
    """pipeline/sandbox/base.py SandboxProvider, as far as the worker uses it."""

    name: str = "local"
    survives_worker: bool = False
    max_lifetime: int | None = None
    isolates_network: bool = True
    concurrent_limit: int | None = None
    concurrent_jobs: int = 2
    killed: list[str] = field(default_factory=list)

    def kill(self, sandbox_id: str) -> bool:
        self.killed.append(sandbox_id)
        return True


class StandInRunner:
    """Walks a claimed job to live (or holds it running until released), as `owner`, the way
    pipeline/runner.py does it: every change owner-checked; a lost job is left quietly."""

    def __init__(self, engine: Engine, provider: StandInProvider) -> None:
        self.engine = engine
        self.provider = provider
        self.hold = threading.Event()
        self.hold.set()  # set: runs go straight through
        self.started: list[tuple[str, str]] = []
        self.done = threading.Semaphore(0)
        self.stopped: list[str] = []

    def run(self, job_id: str, token: CancelToken, *, owner: str) -> StandInApp | None:
        self.started.append((job_id, owner))
        try:
            with session_scope(self.engine) as session:
                queries.transition(
                    session, job_id=job_id, to=JobStatus.FETCHING_RESOURCES, owner=owner
                )
                queries.update_job(
                    session,
                    job_id=job_id,
                    owner=owner,
                    sandbox_id=f"sb-{job_id}",
                    sandbox_provider=self.provider.name,
                )
            while not self.hold.wait(0.02):
                if token.is_cancelled():
                    self.stopped.append(job_id)
                    return None
            with session_scope(self.engine) as session:
                for status in (
                    JobStatus.LOADING_DATA,
                    JobStatus.GENERATING_CODE,
                    JobStatus.TRAINING,
                    JobStatus.DEPLOYING,
                ):
                    queries.transition(session, job_id=job_id, to=status, owner=owner)
                queries.mark_live(
                    session,
                    job_id=job_id,
                    url="http://127.0.0.1:1/",
                    expires_at=datetime.now(UTC) + timedelta(hours=1),
                    owner=owner,
                )
            return StandInApp(f"sb-{job_id}")
        except NotHeld:
            self.stopped.append(job_id)
            return None
        finally:
            self.done.release()

    def wait(self, runs: int = 1) -> None:
        for _ in range(runs):
            assert self.done.acquire(timeout=10), "a run never finished"


@pytest.fixture
def engine(sqlite_engine: Engine) -> Engine:
    return sqlite_engine


def settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "DATABASE_URL": "sqlite://",
        "TRAINBOT_DATA_DIR": tmp_path / "data",
        "TRAINBOT_LEASE_SECONDS": LONG,
        "TRAINBOT_POLL_SECONDS": LONG,
        "TRAINBOT_MAX_CONCURRENT_JOBS": 2,
        "TRAINBOT_MAX_JOBS_PER_WORKSPACE": 0,
        "TRAINBOT_MAX_JOBS_PER_USER": 0,
        "TRAINBOT_EXPIRY_NOTICE_SECONDS": 600,
        **overrides,
    }
    return Settings(**values)


@dataclass
class Rig:
    engine: Engine
    runner: StandInRunner
    provider: StandInProvider
    tmp_path: Path
    workers: list[JobWorker] = field(default_factory=list)

    def worker(self, name: str, **overrides: Any) -> JobWorker:
        deps = PipelineDeps(
            engine=self.engine,
            settings=settings(self.tmp_path, **overrides),
            codegen=TemplateGenerator(),
            sandboxes=self.provider,  # type: ignore[arg-type]
            guard=UrlGuard(),
            sink=RecordingSink(),
        )
        worker = JobWorker(deps, worker_id=name, runner=self.runner)  # type: ignore[arg-type]
        worker.start(loops=False)
        self.workers.append(worker)
        return worker


@pytest.fixture
def rig(engine: Engine, tmp_path: Path) -> Iterator[Rig]:
    provider = StandInProvider()
    rig = Rig(engine, StandInRunner(engine, provider), provider, tmp_path)
    yield rig
    rig.runner.hold.set()
    for worker in rig.workers:
        worker.shutdown()


def queue_job(engine: Engine, *, team: str | None = "T1", user: str = "U1") -> str:
    with session_scope(engine) as session:
        return queries.create_job(
            session, name="m", dataset_source="iris", team_id=team, requested_by=user
        ).id


def row(engine: Engine, job_id: str) -> TrainingJob:
    with session_scope(engine) as session:
        job = queries.get_job(session, job_id=job_id)
        assert job is not None
        return job


def events(engine: Engine, job_id: str, kind: str) -> list[str]:
    with session_scope(engine) as session:
        return [e.message for e in queries.list_events(session, job_id=job_id, kinds=[kind])]


def until(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.02)


def expire_lease(engine: Engine, job_id: str) -> None:
    with session_scope(engine) as session:
        job = queries.get_job(session, job_id=job_id)
        assert job is not None
        job.lease_expires_at = datetime.now(UTC) - timedelta(seconds=1)
        session.add(job)


# -- claims ------------------------------------------------------------------------------


def test_a_worker_claims_the_oldest_jobs_for_its_free_slots_only(rig: Rig) -> None:
    worker = rig.worker("w1")
    rig.runner.hold.clear()
    ids = [queue_job(rig.engine) for _ in range(3)]
    assert worker.claim() == ids[:2]
    assert worker.claim() == []  # both slots are busy
    for job_id in ids[:2]:
        job = row(rig.engine, job_id)
        assert (job.worker_id, job.runs) == ("w1", 1) and job.lease_expires_at is not None
    waiting = row(rig.engine, ids[2])
    assert (waiting.worker_id, waiting.runs) == (None, 0)
    with session_scope(rig.engine) as session:
        assert queue.queue_position(session, job=waiting) == 0


def test_two_workers_never_claim_the_same_job(rig: Rig) -> None:
    first, second = (
        rig.worker("w1", TRAINBOT_MAX_CONCURRENT_JOBS=8),
        rig.worker("w2", TRAINBOT_MAX_CONCURRENT_JOBS=8),
    )
    rig.runner.hold.clear()
    ids = {queue_job(rig.engine) for _ in range(10)}
    got: list[list[str]] = [[], []]

    def claim(index: int, worker: JobWorker) -> None:
        for _ in range(5):
            got[index].extend(worker.claim())

    threads = [threading.Thread(target=claim, args=(i, w)) for i, w in enumerate((first, second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not set(got[0]) & set(got[1])
    assert len(got[0]) + len(got[1]) == 10 and set(got[0]) | set(got[1]) == ids


def test_limits_per_person_and_workspace_hold_jobs_and_say_why(rig: Rig) -> None:
    worker = rig.worker(
        "w1",
        TRAINBOT_MAX_CONCURRENT_JOBS=8,
        TRAINBOT_MAX_JOBS_PER_USER=1,
        TRAINBOT_MAX_JOBS_PER_WORKSPACE=2,
    )
    rig.runner.hold.clear()
    a1, a2 = queue_job(rig.engine, user="UA"), queue_job(rig.engine, user="UA")
    b1 = queue_job(rig.engine, user="UB")
    c1 = queue_job(rig.engine, user="UC")  # the workspace is full once UA and UB run
    other = queue_job(rig.engine, team="T2", user="UA")  # another workspace, its own limits
    assert worker.claim() == [a1, b1, other]
    assert "this person's jobs are running" in (row(rig.engine, a2).wait_reason or "")
    assert "this workspace already runs 2 jobs" in (row(rig.engine, c1).wait_reason or "")
    worker.claim()  # looking again for the same reason says nothing new
    assert events(rig.engine, a2, "progress") == [
        "waiting: 1 of this person's jobs are running, the most that run at once"
    ]
    with session_scope(rig.engine) as session:
        assert queue.queue_position(session, job=row(rig.engine, c1)) == 1  # a2 is ahead
    rig.runner.hold.set()
    rig.runner.wait(3)
    # The running ones went live, which frees their places: the worker looks again at once.
    worker.claim()
    rig.runner.wait(2)
    assert {row(rig.engine, a2).status, row(rig.engine, c1).status} == {JobStatus.LIVE}
    assert row(rig.engine, a2).wait_reason is None


def test_the_sandbox_limit_counts_live_apps(rig: Rig) -> None:
    worker = rig.worker("w1", TRAINBOT_SANDBOX_LIMIT=1)
    first, second = queue_job(rig.engine), queue_job(rig.engine)
    assert worker.claim() == [first]
    rig.runner.wait()
    assert row(rig.engine, first).status == JobStatus.LIVE
    assert worker.claim() == []  # the live app holds the only sandbox
    assert "all 1 local sandboxes are in use" in (row(rig.engine, second).wait_reason or "")


# -- leases and ownership ------------------------------------------------------------------


def test_a_lost_race_is_not_mine_never_a_cancel(rig: Rig) -> None:
    job_id = queue_job(rig.engine)
    with session_scope(rig.engine) as session:
        claimed = queue.claim_jobs(rig.engine, worker_id="w1", count=1, lease_seconds=60)
    assert claimed == [job_id]
    with session_scope(rig.engine) as session, pytest.raises(NotHeld):
        queries.transition(session, job_id=job_id, to=JobStatus.FETCHING_RESOURCES, owner="w2")
    assert row(rig.engine, job_id).status == JobStatus.QUEUED  # nothing was cancelled


def test_renewal_keeps_a_lease_and_a_job_taken_away_stops_its_run(rig: Rig) -> None:
    worker = rig.worker("w1")
    rig.runner.hold.clear()
    (job_id,) = [queue_job(rig.engine)]
    assert worker.claim() == [job_id]
    until(lambda: row(rig.engine, job_id).status == JobStatus.FETCHING_RESOURCES)
    before = row(rig.engine, job_id).lease_expires_at
    worker.renew()
    after = row(rig.engine, job_id).lease_expires_at
    assert before is not None and after is not None and after >= before
    with session_scope(rig.engine) as session:  # another worker took it over
        job = queries.get_job(session, job_id=job_id)
        assert job is not None
        job.worker_id = "w2"
        session.add(job)
    worker.renew()
    rig.runner.wait()
    assert rig.runner.stopped == [job_id]
    job = row(rig.engine, job_id)
    assert (job.status, job.worker_id) == (JobStatus.FETCHING_RESOURCES, "w2")
    assert not events(rig.engine, job_id, "failed") and job.status != JobStatus.CANCELLED


# -- takeovers -----------------------------------------------------------------------------


def test_a_stalled_job_is_taken_over_its_sandbox_killed_and_queued_again(rig: Rig) -> None:
    job_id = queue_job(rig.engine)
    queue.claim_jobs(rig.engine, worker_id="dead", count=1, lease_seconds=60)
    with session_scope(rig.engine) as session:
        queries.transition(session, job_id=job_id, to=JobStatus.FETCHING_RESOURCES, owner="dead")
        queries.update_job(session, job_id=job_id, sandbox_id="sb-old", sandbox_provider="local")
    sweeper = rig.worker("w1", TRAINBOT_MAX_RUNS=3)
    sweeper.sweep()
    assert rig.provider.killed == []  # its lease has not run out: nothing to take over
    expire_lease(rig.engine, job_id)
    rig.runner.hold.clear()
    sweeper.sweep()
    assert rig.provider.killed == ["sb-old"]
    job = row(rig.engine, job_id)
    assert (job.status, job.worker_id, job.runs) == (JobStatus.QUEUED, None, 1)
    assert events(rig.engine, job_id, "warning") == [
        "the worker running this job stopped; starting again, attempt 2 of 3"
    ]
    assert sweeper.claim() == [job_id]
    assert row(rig.engine, job_id).runs == 2


def test_two_sweepers_take_over_a_stalled_job_once(rig: Rig) -> None:
    job_id = queue_job(rig.engine)
    queue.claim_jobs(rig.engine, worker_id="dead", count=1, lease_seconds=60)
    expire_lease(rig.engine, job_id)
    first, second = rig.worker("w1"), rig.worker("w2")
    with session_scope(rig.engine) as session:
        seen = queries.get_job(session, job_id=job_id)
    assert seen is not None
    with session_scope(rig.engine) as session:
        assert queue.take_over(session, seen=seen, worker_id="w1", lease_seconds=60)
    with session_scope(rig.engine) as session:
        assert not queue.take_over(session, seen=seen, worker_id="w2", lease_seconds=60)
    del first, second


def test_a_job_whose_workers_keep_dying_fails_after_max_runs(rig: Rig) -> None:
    job_id = queue_job(rig.engine)
    queue.claim_jobs(rig.engine, worker_id="dead", count=1, lease_seconds=60)
    with session_scope(rig.engine) as session:
        job = queries.get_job(session, job_id=job_id)
        assert job is not None
        job.runs = 2
        session.add(job)
    expire_lease(rig.engine, job_id)
    rig.worker("w1", TRAINBOT_MAX_RUNS=2).sweep()
    job = row(rig.engine, job_id)
    assert job.status == JobStatus.FAILED and job.worker_id is None
    assert events(rig.engine, job_id, "failed") == [
        "the worker running this job stopped 2 times; retry it to run it again"
    ]


def test_a_local_app_whose_worker_died_is_stopped_and_says_so(rig: Rig) -> None:
    owner = rig.worker("w0")
    job_id = queue_job(rig.engine)
    assert owner.claim() == [job_id]
    rig.runner.wait()
    until(lambda: owner._apps)  # noqa: SLF001 - the worker holds the app it serves
    assert row(rig.engine, job_id).worker_id == "w0"
    expire_lease(rig.engine, job_id)  # as if w0 was SIGKILLed
    rig.worker("w1").sweep()
    job = row(rig.engine, job_id)
    assert job.status == JobStatus.EXPIRED
    assert events(rig.engine, job_id, "finished")[-1] == (
        "the live app was stopped: the worker serving it stopped"
    )
    assert rig.provider.killed == [f"sb-{job_id}"]


# -- apps: release, expiry, notice ----------------------------------------------------------------


def test_an_app_that_outlives_its_worker_is_released_and_any_sweep_expires_it(rig: Rig) -> None:
    rig.provider.survives_worker = True
    rig.provider.name = "e2b"
    worker = rig.worker("w1")
    job_id = queue_job(rig.engine)
    worker.claim()
    rig.runner.wait()
    until(lambda: row(rig.engine, job_id).worker_id is None)  # let go once live
    assert row(rig.engine, job_id).status == JobStatus.LIVE
    with session_scope(rig.engine) as session:
        queries.update_job(
            session, job_id=job_id, expires_at=datetime.now(UTC) + timedelta(minutes=5)
        )
    other = rig.worker("w2")
    other.sweep()
    other.sweep()
    assert events(rig.engine, job_id, "expiring") == [
        f"the live app stops at {row(rig.engine, job_id).expires_at:%H:%M} UTC"
    ]  # once, however many sweeps
    with session_scope(rig.engine) as session:
        queries.update_job(
            session, job_id=job_id, expires_at=datetime.now(UTC) - timedelta(seconds=1)
        )
    other.sweep()
    assert row(rig.engine, job_id).status == JobStatus.EXPIRED
    assert rig.provider.killed == [f"sb-{job_id}"]
    assert events(rig.engine, job_id, "finished")[-1] == (
        "the live app was stopped: its lifetime ran out"
    )


def test_an_extension_makes_the_notice_due_again(rig: Rig) -> None:
    rig.provider.survives_worker = True
    worker = rig.worker("w1")
    job_id = queue_job(rig.engine)
    worker.claim()
    rig.runner.wait()
    soon = datetime.now(UTC) + timedelta(minutes=5)
    with session_scope(rig.engine) as session:
        queries.update_job(session, job_id=job_id, expires_at=soon)
    worker.sweep()
    with session_scope(rig.engine) as session:
        queries.record_extension(session, job_id=job_id, expires_at=soon + timedelta(minutes=3))
    worker.sweep()
    assert len(events(rig.engine, job_id, "expiring")) == 2


# -- drain ----------------------------------------------------------------------------------


def test_a_drain_lets_quick_jobs_finish_and_hands_the_rest_back(rig: Rig) -> None:
    worker = rig.worker("w1")
    rig.runner.hold.clear()
    job_id = queue_job(rig.engine)
    assert worker.claim() == [job_id]
    worker.drain(grace=0.2)
    assert rig.runner.stopped == [job_id]
    job = row(rig.engine, job_id)
    assert (job.status, job.worker_id, job.runs) == (JobStatus.QUEUED, None, 0)
    assert events(rig.engine, job_id, "warning") == [HANDED_BACK]
    assert worker.claim() == []  # a draining worker claims nothing more


def test_a_drain_stops_the_local_apps_it_serves(rig: Rig) -> None:
    worker = rig.worker("w1")
    job_id = queue_job(rig.engine)
    worker.claim()
    rig.runner.wait()
    worker.drain(grace=0)
    job = row(rig.engine, job_id)
    assert job.status == JobStatus.EXPIRED
    assert "the worker serving it stopped" in events(rig.engine, job_id, "finished")[-1]


def test_stopping_an_app_nobody_holds_kills_it_by_id(rig: Rig) -> None:
    rig.provider.survives_worker = True  # E2B: `trainbot run`'s Ctrl-C stops it this way
    worker = rig.worker("w1")
    job_id = queue_job(rig.engine)
    worker.claim()
    rig.runner.wait()
    until(lambda: row(rig.engine, job_id).worker_id is None)
    worker.expire(job_id, reason="stopped from the command line")
    assert row(rig.engine, job_id).status == JobStatus.EXPIRED
    assert rig.provider.killed == [f"sb-{job_id}"]
