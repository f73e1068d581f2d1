"""The job's training budget in the database, on SQLite and PostgreSQL: migration 0005 up and
down with jobs in the table, and the column kept by create_job and retries."""

from __future__ import annotations

from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from storage import queries
from storage.db import downgrade, make_engine, session_scope, upgrade
from storage.states import JobStatus

COLUMN = "time_budget_seconds"


def _columns(engine: Engine) -> dict[str, dict[str, object]]:
    return {c["name"]: c for c in inspect(engine).get_columns("training_jobs")}


def _revision(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one())


def test_0005_adds_a_nullable_budget_that_old_jobs_lack_and_takes_it_away(
    empty_db_url: str,
) -> None:
    engine = make_engine(empty_db_url)
    upgrade(engine, "0004")
    assert COLUMN not in _columns(engine)
    with session_scope(engine) as session:  # a job from before the revision
        session.execute(
            text(
                "INSERT INTO ai_models (id, name, goal, dataset_source, created_by, created_at,"
                " updated_at) VALUES ('m1', 'old', '', 'iris', 'U1', :now, :now)"
            ),
            {"now": "2026-01-01 00:00:00+00:00"},
        )
        old_id = "a" * 32
        session.execute(
            text(
                "INSERT INTO training_jobs (id, model_id, status, attempt, dataset_source, goal,"
                " resources, requested_by, origin, ttl_seconds, runs, stage_timings, created_at,"
                " updated_at) VALUES (:id, 'm1', 'queued', 1, 'iris', '', '[]', 'U1', 'cli',"
                " 3600, 0, '{}', :now, :now)"
            ),
            {"id": old_id, "now": "2026-01-01 00:00:00+00:00"},
        )

    upgrade(engine, "0005")
    assert _revision(engine) == "0005"
    column = _columns(engine)[COLUMN]
    assert column["nullable"] is True
    with session_scope(engine) as session:
        old = queries.get_job(session, job_id=old_id)
        assert old is not None and old.time_budget_seconds is None  # the worker's default
        new_id = queries.create_job(
            session, name="new", dataset_source="iris", time_budget_seconds=120
        ).id

    downgrade(engine, "0004")
    assert COLUMN not in _columns(engine)
    with engine.connect() as conn:  # the jobs themselves survive the downgrade
        ids = set(conn.execute(text("SELECT id FROM training_jobs")).scalars())
    assert ids == {old_id, new_id}

    upgrade(engine)
    with session_scope(engine) as session:
        again = queries.get_job(session, job_id=new_id)
        assert again is not None and again.time_budget_seconds is None  # dropped, not restored
    engine.dispose()


def test_create_job_and_its_retries_keep_the_budget(engine: Engine) -> None:
    with session_scope(engine) as session:
        chosen = queries.create_job(
            session, name="m", dataset_source="iris", time_budget_seconds=300
        ).id
        default = queries.create_job(session, name="d", dataset_source="iris").id
    for job_id in (chosen, default):
        with session_scope(engine) as session:
            queries.transition(session, job_id=job_id, to=JobStatus.CANCELLED)
    with session_scope(engine) as session:
        retry = queries.create_retry(session, job_id=chosen, requested_by="U2", origin="slack")
        retry_of_default = queries.create_retry(session, job_id=default)
        retry_id, default_retry_id = retry.id, retry_of_default.id
    with session_scope(engine) as session:
        kept = queries.get_job(session, job_id=retry_id)
        assert kept is not None and kept.time_budget_seconds == 300
        still_default = queries.get_job(session, job_id=default_retry_id)
        assert still_default is not None and still_default.time_budget_seconds is None
    # A retry of a retry keeps it too.
    with session_scope(engine) as session:
        queries.transition(session, job_id=retry_id, to=JobStatus.CANCELLED)
        third = queries.create_retry(session, job_id=retry_id)
        assert third.time_budget_seconds == 300
