"""Storage against SQLite and PostgreSQL: migrations, queries and the state machine."""

from __future__ import annotations

import hashlib
import os
import random
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from storage import queries
from storage.db import alembic_config, downgrade, make_engine, session_scope, upgrade
from storage.external_tables import not_slack_table
from storage.models import SHORT_ID_LENGTH
from storage.states import IllegalTransition, JobStatus

# Statements that change a database; reading (SELECT, PRAGMA) is all a no-op upgrade may do.
WRITES = {"CREATE", "ALTER", "DROP", "INSERT", "UPDATE", "DELETE", "REPLACE", "TRUNCATE"}


def test_upgrade_from_empty_yields_exactly_the_models_schema(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(
            # slack_sdk's OAuth tables are not our models: test_slack_tables.py checks them.
            MigrationContext.configure(
                conn, opts={"compare_type": True, "include_name": not_slack_table}
            ),
            SQLModel.metadata,
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


def _schema(engine: Engine) -> dict[str, Any]:
    """Tables with their columns, keys, indexes and constraints, as the database reports them."""
    inspector = inspect(engine)  # a fresh inspector: they cache what they have read
    schema: dict[str, Any] = {}
    for table in sorted(inspector.get_table_names()):
        schema[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
                for c in inspector.get_columns(table)
            ],
            "primary key": inspector.get_pk_constraint(table),
            "foreign keys": sorted(map(repr, inspector.get_foreign_keys(table))),
            "indexes": sorted(map(repr, inspector.get_indexes(table))),
            "unique": sorted(map(repr, inspector.get_unique_constraints(table))),
        }
    return schema


def _current_heads(engine: Engine) -> tuple[str, ...]:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_heads()


def test_upgrade_twice_is_harmless(engine: Engine) -> None:
    job_id = _new_job(engine)
    before = _schema(engine)
    assert {"ai_models", "training_jobs", "job_events", "alembic_version"} <= set(before)
    assert all(before[t]["indexes"] for t in ("training_jobs", "job_events"))
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    assert _current_heads(engine) == (head,)

    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        upgrade(engine)
    finally:
        event.remove(engine, "before_cursor_execute", record)

    assert _schema(engine) == before
    assert _current_heads(engine) == (head,)
    changes = [s for s in statements if s.lstrip().split(None, 1)[0].upper() in WRITES]
    assert changes == [], "the second upgrade changed the database"
    with session_scope(engine) as session:
        assert queries.get_job(session, job_id=job_id) is not None


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


class EntropySpy:
    """Stands in for the operating system's random source and remembers what it handed out.

    secrets.token_bytes/token_hex read SystemRandom.randbytes, which returns `_urandom(n)`,
    random.py's own name for os.urandom (Lib/random.py: `from os import urandom as _urandom`,
    and `randbytes`; Lib/secrets.py: `token_bytes`, Python 3.11). uuid.uuid4 reads os.urandom.
    Patching both names observes the sources that `secrets` and `uuid` draw from;
    random.random() and friends (the Mersenne Twister) and clocks never come here.
    """

    def __init__(self) -> None:
        self.handed_out: list[bytes] = []
        self._counter = 0

    def __call__(self, n: int) -> bytes:
        self._counter += 1
        chunk = hashlib.sha512(self._counter.to_bytes(8, "big")).digest()[:n]
        self.handed_out.append(chunk)
        return chunk


def _ids(engine: Engine, jobs: int) -> list[str]:
    """The ids of `jobs` new jobs and of the models created with them."""
    ids: list[str] = []
    with session_scope(engine) as session:
        for n in range(jobs):
            job = queries.create_job(session, name=f"m{n}", dataset_source="iris")
            ids += [job.id, job.model_id]
    return ids


def test_job_ids_are_random_and_unguessable(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = EntropySpy()
    monkeypatch.setattr(os, "urandom", spy)
    monkeypatch.setattr(random, "_urandom", spy)
    drawn = _ids(engine, 5)
    monkeypatch.undo()
    # Each id is the hex of 16 bytes (128 bits) exactly as the OS random source gave them.
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in drawn), drawn
    assert len(set(drawn)) == 10
    assert {bytes.fromhex(i) for i in drawn} <= set(spy.handed_out)

    ids = _ids(engine, 1500)
    assert len(set(ids)) == len(ids) == 3000
    # Humans type the first 8 characters. 3,000 random 32-bit prefixes repeat with a chance
    # of about 3000**2 / 2**33 = 0.1%, twice with a chance of about one in a million; ids
    # from a counter, a clock or a short random part repeat far more.
    prefixes = [i[:SHORT_ID_LENGTH] for i in ids]
    assert SHORT_ID_LENGTH == 8
    assert len(prefixes) - len(set(prefixes)) <= 1


def test_find_job_by_prefix_and_its_errors(engine: Engine) -> None:
    job_id = _new_job(engine)
    with session_scope(engine) as session:
        assert queries.find_job(session, ref=job_id[:8].upper()).id == job_id
        assert queries.find_job(session, ref=job_id).id == job_id
        with pytest.raises(queries.JobLookupError, match="no job has the id"):
            queries.find_job(session, ref="ffffffffff" if job_id[0] != "f" else "0000000000")
        with pytest.raises(queries.JobLookupError, match="not a job id"):
            queries.find_job(session, ref="zz")


@pytest.mark.parametrize("ref", ["a" * 60_000, "0123456789abcdef" * 2 + "0", "12 34"])
def test_refs_that_cannot_be_ids_are_refused_before_any_query(engine: Engine, ref: str) -> None:
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    with session_scope(engine) as session:
        event.listen(engine, "before_cursor_execute", record)
        try:
            with pytest.raises(queries.InvalidJobRef, match="is not a job id") as caught:
                queries.find_job(session, ref=ref)
        finally:
            event.remove(engine, "before_cursor_execute", record)
    assert statements == []
    assert len(str(caught.value)) < 150  # quotes a short excerpt of what was typed


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
        assert events[0].kind == queries.QUEUED_KIND  # written with the job itself
        events = events[1:]
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
        # count_jobs counts what list_jobs finds without its limit, with the same filters
        assert len(queries.list_jobs(session, channel_id="C1", limit=1)) == 1
        assert queries.count_jobs(session, channel_id="C1") == 2
        assert queries.count_jobs(session, channel_id="C1", requested_by="U9") == 1
        assert queries.count_jobs(session, statuses=[JobStatus.QUEUED]) == 3
        assert queries.count_jobs(session, statuses=[JobStatus.LIVE]) == 0
        assert queries.count_jobs(session) == 3


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
