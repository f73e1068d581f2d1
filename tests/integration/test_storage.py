"""Storage against SQLite and PostgreSQL: migrations, queries and the state machine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from storage import queries
from storage.db import downgrade, make_engine, session_scope, upgrade
from storage.states import IllegalTransition, JobStatus


def test_upgrade_from_empty_yields_exactly_the_models_schema(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), SQLModel.metadata
        )
    assert diff == []
    assert {"ai_models", "training_jobs", "job_events"} <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_downgrade_to_base_and_back_up(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    upgrade(engine)
    downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade(engine)
    assert "training_jobs" in inspect(engine).get_table_names()
    engine.dispose()


def test_upgrade_twice_is_harmless(engine: Engine) -> None:
    upgrade(engine)


def _new_job(engine: Engine, **overrides: object) -> str:
    fields: dict[str, object] = {
        "name": "churn",
        "dataset_source": "iris",
        "goal": "predict the species",
        "resources": ["https://example.com/doc"],
        "requested_by": "U123",
        "channel_id": "C1",
    }
    fields.update(overrides)
    with session_scope(engine) as session:
        return queries.create_job(session, **fields).id  # type: ignore[arg-type]


def test_create_job_records_model_and_queued_job(engine: Engine) -> None:
    job_id = _new_job(engine)
    with session_scope(engine) as session:
        job = queries.get_job(session, job_id=job_id)
        assert job is not None
        assert job.status == JobStatus.QUEUED
        assert job.resources == ["https://example.com/doc"]
        assert job.created_at.tzinfo is not None
        model = queries.get_model(session, model_id=job.model_id)
        assert model is not None and model.name == "churn"


def test_job_ids_are_random_and_unguessable(engine: Engine) -> None:
    ids = {_new_job(engine) for _ in range(5)}
    assert len(ids) == 5
    assert all(len(i) == 32 for i in ids)
    prefixes = sorted(i[:8] for i in ids)
    assert prefixes != [f"{n:08x}" for n in range(1, 6)]


def test_find_job_by_prefix_and_its_errors(engine: Engine) -> None:
    job_id = _new_job(engine)
    with session_scope(engine) as session:
        assert queries.find_job(session, ref=job_id[:8].upper()).id == job_id
        assert queries.find_job(session, ref=job_id).id == job_id
        with pytest.raises(queries.JobLookupError, match="no job has the id"):
            queries.find_job(session, ref="ffffffffff" if job_id[0] != "f" else "0000000000")
        with pytest.raises(queries.JobLookupError, match="not a job id"):
            queries.find_job(session, ref="zz")


def test_transitions_are_recorded_with_timestamps(engine: Engine) -> None:
    job_id = _new_job(engine)
    with session_scope(engine) as session:
        for status in (
            JobStatus.FETCHING_RESOURCES,
            JobStatus.LOADING_DATA,
            JobStatus.GENERATING_CODE,
            JobStatus.TRAINING,
            JobStatus.DEPLOYING,
        ):
            queries.transition(session, job_id=job_id, to=status)
        expires = datetime.now(UTC) + timedelta(hours=1)
        job = queries.mark_live(
            session, job_id=job_id, url="http://127.0.0.1:9/", expires_at=expires
        )
        assert job.stage == "deploy"
        assert job.started_at is not None and job.live_at is not None
    with session_scope(engine) as session:
        job = queries.get_job(session, job_id=job_id)
        assert job is not None and job.status == JobStatus.LIVE
        assert job.deployment_url == "http://127.0.0.1:9/"
        assert job.expires_at == expires
        model = queries.get_model(session, model_id=job.model_id)
        assert model is not None and model.deployed_url == "http://127.0.0.1:9/"
        queries.transition(session, job_id=job_id, to=JobStatus.EXPIRED)
    with session_scope(engine) as session:
        job = queries.get_job(session, job_id=job_id)
        assert job is not None and job.status == JobStatus.EXPIRED
        assert job.deployment_url == "http://127.0.0.1:9/"  # kept as history
        model = queries.get_model(session, model_id=job.model_id)
        assert model is not None and model.deployed_url is None  # the app is gone


def test_illegal_transition_raises_and_changes_nothing(engine: Engine) -> None:
    job_id = _new_job(engine)
    with pytest.raises(IllegalTransition):
        with session_scope(engine) as session:
            queries.transition(session, job_id=job_id, to=JobStatus.LIVE)
    with session_scope(engine) as session:
        job = queries.get_job(session, job_id=job_id)
        assert job is not None and job.status == JobStatus.QUEUED


def test_failure_keeps_the_stage_and_the_reason(engine: Engine) -> None:
    job_id = _new_job(engine)
    with session_scope(engine) as session:
        queries.transition(session, job_id=job_id, to=JobStatus.FETCHING_RESOURCES)
        queries.transition(session, job_id=job_id, to=JobStatus.LOADING_DATA)
        queries.transition(session, job_id=job_id, to=JobStatus.FAILED, error="no target")
    with session_scope(engine) as session:
        job = queries.get_job(session, job_id=job_id)
        assert job is not None
        assert (job.status, job.stage, job.error) == ("failed", "dataset", "no target")
        assert job.finished_at is not None


def test_retry_creates_a_new_attempt_only_for_finished_jobs(engine: Engine) -> None:
    job_id = _new_job(engine)
    with session_scope(engine) as session:
        with pytest.raises(queries.JobActionError, match="queued"):
            queries.create_retry(session, job_id=job_id)
        queries.transition(session, job_id=job_id, to=JobStatus.FAILED, error="boom")
        retry = queries.create_retry(session, job_id=job_id)
        assert (retry.attempt, retry.retry_of, retry.status) == (2, job_id, "queued")
        queries.transition(session, job_id=retry.id, to=JobStatus.CANCELLED)
        third = queries.create_retry(session, job_id=job_id)
        assert third.attempt == 3


def test_update_job_and_metrics_round_trip(engine: Engine) -> None:
    job_id = _new_job(engine)
    metrics = {"metric": "accuracy", "score": 0.97, "baseline": 0.33}
    with session_scope(engine) as session:
        queries.update_job(session, job_id=job_id, metrics=metrics, task_type="classification")
        with pytest.raises(ValueError, match="not updatable"):
            queries.update_job(session, job_id=job_id, status="live")
    with session_scope(engine) as session:
        job = queries.get_job(session, job_id=job_id)
        assert job is not None and job.metrics == metrics
        model = queries.get_model(session, model_id=job.model_id)
        assert model is not None and model.task_type == "classification"


def test_events_keep_their_order(engine: Engine) -> None:
    job_id = _new_job(engine)
    with session_scope(engine) as session:
        for n in range(30):
            queries.add_event(
                session, job_id=job_id, kind="log", stage="train", message=f"line {n}"
            )
        queries.add_event(session, job_id=job_id, kind="warning", stage="resources", message="w")
    with session_scope(engine) as session:
        events = queries.list_events(session, job_id=job_id)
        assert [e.message for e in events[:30]] == [f"line {n}" for n in range(30)]
        warnings = queries.list_events(session, job_id=job_id, kinds=["warning"])
        assert [e.message for e in warnings] == ["w"]
        tail = queries.list_events(session, job_id=job_id, after_id=events[-2].id or 0)
        assert [e.message for e in tail] == ["w"]


def test_list_jobs_filters_and_orders_newest_first(engine: Engine) -> None:
    first = _new_job(engine, channel_id="C1")
    second = _new_job(engine, channel_id="C1", requested_by="U9")
    _new_job(engine, channel_id="C2")
    with session_scope(engine) as session:
        assert [j.id for j in queries.list_jobs(session, channel_id="C1")] == [second, first]
        assert [j.id for j in queries.list_jobs(session, requested_by="U9")] == [second]
        assert len(queries.list_jobs(session, statuses=[JobStatus.QUEUED])) == 3


def test_0002_keeps_existing_jobs_and_marks_them_as_cli(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    upgrade(engine, "0001")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO ai_models (id, name, goal, dataset_source, created_by, created_at, "
                "updated_at) VALUES ('m1', 'old', '', 'iris', 'cli', :now, :now)"
            ),
            {"now": datetime.now(UTC)},
        )
        conn.execute(
            text(
                "INSERT INTO training_jobs (id, model_id, status, attempt, dataset_source, goal, "
                "resources, requested_by, ttl_seconds, stage_timings, created_at, updated_at) "
                "VALUES ('j1', 'm1', 'live', 1, 'iris', '', '[]', 'cli', 60, '{}', :now, :now)"
            ),
            {"now": datetime.now(UTC)},
        )
    upgrade(engine)
    with session_scope(engine) as session:
        job = queries.get_job(session, job_id="j1")
        assert job is not None and (job.origin, job.request_key, job.card_ts) == ("cli", None, None)
    engine.dispose()


def test_request_key_finds_the_job_a_repeated_submission_created(engine: Engine) -> None:
    with session_scope(engine) as session:
        first = queries.create_job(
            session, name="a", dataset_source="iris", origin="slack", request_key="k" * 64
        )
    with session_scope(engine) as session:
        again = queries.create_job(
            session, name="a", dataset_source="iris", origin="slack", request_key="k" * 64
        )
        assert again.id == first.id
        assert len(queries.list_jobs(session)) == 1
