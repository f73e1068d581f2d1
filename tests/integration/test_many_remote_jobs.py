"""One worker runs dozens of remote jobs at once: each is a thread waiting on its sandbox, and
their many short writes share the engine's connection pool without starving it."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from bench.remote_standin import AppServer, WaitingProvider, Waits
from storage import queries
from storage.db import session_scope
from storage.states import JobStatus
from tests.support.pipeline import SETTLED, make_settings, start_services, submit

JOBS = 40
# Short waits, the shape of E2B's: a create, 5 ms a call, a second of training once the
# provider's gate lets the jobs through.
WAITS = Waits(create=0.05, call=0.005, train=1.0)


@pytest.fixture
def apps() -> Iterator[AppServer]:
    with AppServer() as server:
        yield server


def test_one_worker_runs_forty_remote_jobs_at_once(
    engine: Engine, tmp_path: Path, apps: AppServer
) -> None:
    provider = WaitingProvider(apps, WAITS)
    settings = make_settings(
        tmp_path,
        TRAINBOT_MAX_CONCURRENT_JOBS=JOBS,
        TRAINBOT_MAX_JOBS_PER_WORKSPACE=0,
        TRAINBOT_MAX_JOBS_PER_USER=0,
    )
    provider.gate.clear()  # every job waits in training until all of them are there
    services = start_services(engine, settings, sandboxes=provider)
    try:
        job_ids = [submit(services, name=f"remote {n}", dataset_source="iris") for n in range(JOBS)]
        all_training = wait_for(lambda: provider.training == JOBS, timeout=180)
        provider.gate.set()
        statuses = wait_settled(engine, job_ids, timeout=180)
    finally:
        provider.gate.set()
        services.worker.shutdown()
    # One worker, a slot and a waiting thread each: all forty in their sandboxes at once.
    assert all_training, f"{provider.training} of {JOBS} training at once"
    assert statuses == {JobStatus.LIVE.value: JOBS}, failures(engine, job_ids)


def wait_for(condition: Callable[[], bool], *, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def wait_settled(engine: Engine, job_ids: list[str], *, timeout: float) -> Counter[str]:
    deadline = time.monotonic() + timeout
    while True:
        with session_scope(engine) as session:
            jobs = [queries.get_job(session, job_id=job_id) for job_id in job_ids]
        settled = [job for job in jobs if job is not None and job.job_status in SETTLED]
        if len(settled) == len(job_ids) or time.monotonic() > deadline:
            return Counter(job.status for job in jobs if job is not None)
        time.sleep(0.2)


def failures(engine: Engine, job_ids: list[str]) -> list[str]:
    with session_scope(engine) as session:
        jobs = [queries.get_job(session, job_id=job_id) for job_id in job_ids]
    return [f"{job.short_id}: {job.status} {job.error}" for job in jobs if job and job.error]
