"""A transition decides on the row as it is now, not as the session last read it.

Found by the bench smoke test: `JobService.cancel` reads the job (to find it by its id
prefix), then transitions it in the same session; when the worker had moved the job to its
next stage in between, the transition compared against the stale status it had cached,
lost, and refused a legal cancel ("job ... is loading_data; there is nothing to cancel").
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine

from storage import queries
from storage.db import make_engine, session_scope, upgrade
from storage.states import JobStatus


def test_a_cancel_after_the_worker_moved_on_since_the_read_succeeds(engine: Engine) -> None:
    with session_scope(engine) as session:
        job_id = queries.create_job(session, name="x", dataset_source="iris").id
        queries.transition(session, job_id=job_id, to=JobStatus.FETCHING_RESOURCES)
    with session_scope(engine) as session:
        seen = queries.get_job(session, job_id=job_id)  # the service's lookup
        assert seen is not None and seen.job_status == JobStatus.FETCHING_RESOURCES
        with session_scope(engine) as worker:  # meanwhile the worker moves on
            queries.transition(worker, job_id=job_id, to=JobStatus.LOADING_DATA)
        job = queries.transition(session, job_id=job_id, to=JobStatus.CANCELLED)
        assert job.job_status == JobStatus.CANCELLED


def test_a_move_made_between_the_read_and_the_write_is_decided_again(tmp_path: Path) -> None:
    """SQLite has no row lock: another process can move the job after `transition` read it
    and before its compare-and-set. The cancel is then decided on the new status."""
    url = f"sqlite:///{tmp_path / 'race.db'}"
    engine, other = make_engine(url), make_engine(url)
    upgrade(engine)
    with session_scope(engine) as session:
        job_id = queries.create_job(session, name="x", dataset_source="iris").id
        queries.transition(session, job_id=job_id, to=JobStatus.FETCHING_RESOURCES)
    raced: list[str] = []

    def worker_moves_first(conn: object, cursor: object, statement: str, *_: object) -> None:
        if statement.startswith("UPDATE training_jobs SET status") and not raced:
            raced.append(statement)
            with session_scope(other) as session:  # the worker's next stage lands now
                queries.transition(session, job_id=job_id, to=JobStatus.LOADING_DATA)

    event.listen(engine, "before_cursor_execute", worker_moves_first)
    with session_scope(engine) as session:
        job = queries.transition(session, job_id=job_id, to=JobStatus.CANCELLED)
    assert raced and job.job_status == JobStatus.CANCELLED
    with session_scope(other) as session:
        assert queries.get_job(session, job_id=job_id).status == "cancelled"  # type: ignore[union-attr]
    engine.dispose()
    other.dispose()
