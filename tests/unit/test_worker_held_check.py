"""A worker's running jobs learn together, in one query a second, whether it still holds them
(pipeline/worker.py HeldCheck): hundreds of remote jobs in one process each asking for itself
were a query every few milliseconds beside the web server's acks. A job cancelled or taken
over elsewhere must still stop within the same bound as when each asked for itself.

Stand-ins from tests/unit/test_worker_queue.py: a runner that holds its job running, polling
its token every 20 ms as a sandbox's wait does, and a provider; on a SQLite file.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from pipeline.worker import HELD_CHECK_SECONDS, HeldCheck
from storage import queue
from storage.db import session_scope
from storage.models import TrainingJob
from storage.states import JobStatus
from tests.unit.test_worker_queue import (
    Rig,
    StandInProvider,
    StandInRunner,
    queue_job,
    row,
    until,
)

JOBS = 8
# A lost job stops within the check's age, plus the read and the runner's poll; a second of
# slack for a loaded machine.
STOP_BOUND = HELD_CHECK_SECONDS + 1.0


@pytest.fixture
def rig(sqlite_engine: Engine, tmp_path: Path) -> Iterator[Rig]:
    provider = StandInProvider()
    rig = Rig(sqlite_engine, StandInRunner(sqlite_engine, provider), provider, tmp_path)
    rig.runner.hold.clear()  # every claimed job stays running, polling its token
    yield rig
    rig.runner.hold.set()
    for worker in rig.workers:
        worker.shutdown()


def _start(rig: Rig, jobs: int) -> list[str]:
    worker = rig.worker("w1", TRAINBOT_MAX_CONCURRENT_JOBS=jobs)
    ids = [queue_job(rig.engine) for _ in range(jobs)]
    assert sorted(worker.claim()) == sorted(ids)
    until(lambda: all(row(rig.engine, i).status == JobStatus.FETCHING_RESOURCES for i in ids))
    return ids


def _count_job_reads(engine: Engine, seconds: float) -> int:
    """SELECTs of the jobs table the engine runs in `seconds` (the checks are all of them:
    the worker's loops are not running)."""
    seen: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "training_jobs" in statement:
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        time.sleep(seconds)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return len(seen)


def test_running_jobs_share_one_read_a_second(rig: Rig) -> None:
    _start(rig, JOBS)
    window = 3 * HELD_CHECK_SECONDS
    reads = _count_job_reads(rig.engine, window)
    # One read per second for all of them (one more for the window's edges); each job asking
    # for itself would be JOBS a second.
    assert 1 <= reads <= window / HELD_CHECK_SECONDS + 1, reads
    assert rig.runner.stopped == []  # and nobody was told to stop


def test_a_job_taken_over_elsewhere_stops_within_the_bound(rig: Rig) -> None:
    ids = _start(rig, JOBS)
    taken, cancelled = ids[0], ids[1]
    with session_scope(rig.engine) as session:  # another worker's takeover, another cancel
        for job_id, change in ((taken, {"worker_id": "w2"}), (cancelled, {"status": "cancelled"})):
            job = session.get(TrainingJob, job_id)
            assert job is not None
            for name, value in change.items():
                setattr(job, name, value)
            session.add(job)
    changed = time.monotonic()
    until(lambda: len(rig.runner.stopped) == 2, timeout=5)
    assert time.monotonic() - changed <= STOP_BOUND
    assert sorted(rig.runner.stopped) == sorted([taken, cancelled])  # the others run on


def test_a_job_claimed_after_a_read_began_is_not_judged_by_it(sqlite_engine: Engine) -> None:
    earlier, later = queue_job(sqlite_engine), queue_job(sqlite_engine)
    queue.claim_jobs(sqlite_engine, worker_id="w1", count=1, lease_seconds=60, only=[earlier])
    running = {earlier}
    check = HeldCheck(sqlite_engine, "w1", lambda: set(running), every=3600)
    assert not check.lost(earlier)  # the first ask reads: held
    # `later` is claimed and starts running after that read; until the next read, the read
    # that never asked about it says nothing about it.
    queue.claim_jobs(sqlite_engine, worker_id="w1", count=1, lease_seconds=60, only=[later])
    running.add(later)
    assert not check.lost(later)


def test_a_failed_read_raises_in_its_job_and_waits_its_turn(sqlite_engine: Engine) -> None:
    reads: list[int] = []

    def running() -> set[str]:
        reads.append(1)
        raise RuntimeError("the database is down")

    check = HeldCheck(sqlite_engine, "w1", running, every=3600)
    with pytest.raises(RuntimeError):
        check.lost("some-job")  # the job that read learns of it, as with its own check
    assert not check.lost("other-job")  # not read again at every poll
    assert len(reads) == 1
