"""Recording a submission before its ack (storage.db.create_job_once): once per request key,
even when deliveries race in separate processes, and on PostgreSQL in one statement that
commits the model, the job, its "queued" event and the wake-ups together."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import event, func
from sqlalchemy.engine import Engine
from sqlmodel import select

from storage import queries
from storage.db import create_job_once, make_engine, session_scope
from storage.models import AiModel, JobEvent, TrainingJob
from storage.notify import EVENTS_CHANNEL, JOBS_CHANNEL, Wakeup

FIELDS: dict[str, Any] = {
    "name": "churn",
    "dataset_source": "iris",
    "goal": "predict species",
    "resources": ["https://example.com/notes"],
    "requested_by": "U1",
    "channel_id": "C1",
    "team_id": "T1",
    "ttl_seconds": 7200,
    "time_budget_seconds": 90,
    "origin": "slack",
}


def _counts(engine: Engine) -> tuple[int, int, int]:
    with session_scope(engine) as session:
        return tuple(  # type: ignore[return-value]
            session.exec(select(func.count()).select_from(table)).one()
            for table in (AiModel, TrainingJob, JobEvent)
        )


def test_a_new_job_is_stored_as_returned_with_its_queued_event(engine: Engine) -> None:
    job, created = create_job_once(engine, request_key="k1", **FIELDS)
    assert created
    with session_scope(engine) as session:
        stored = queries.get_job(session, job_id=job.id)
        model = queries.get_model(session, model_id=job.model_id)
        events = queries.list_events(session, job_id=job.id)
    assert stored is not None and stored.model_dump() == job.model_dump()
    assert (stored.status, stored.request_key, stored.resources) == (
        "queued",
        "k1",
        FIELDS["resources"],
    )
    assert (stored.metrics, stored.artifacts, stored.stage_timings) == (None, None, {})
    assert model is not None and (model.name, model.created_by, model.team_id) == (
        "churn",
        "U1",
        "T1",
    )
    assert [(e.kind, e.stage, e.message) for e in events] == [
        (queries.QUEUED_KIND, queries.JOB_STAGE, "queued")
    ]


def test_a_redelivery_gets_the_first_job_and_stores_nothing(engine: Engine) -> None:
    first, created = create_job_once(engine, request_key="k2", **FIELDS)
    again, created_again = create_job_once(engine, request_key="k2", **FIELDS)
    assert (created, created_again) == (True, False)
    assert again.id == first.id
    assert _counts(engine) == (1, 1, 1)
    other, created_other = create_job_once(engine, request_key="k3", **FIELDS)
    assert created_other and other.id != first.id
    assert _counts(engine) == (2, 2, 2)


def test_deliveries_racing_in_separate_processes_make_one_job(
    engine: Engine, empty_db_url: str
) -> None:
    """Each delivery on an engine of its own, as in separate processes; only the unique
    request key stands between them."""
    racers = 6
    engines = [make_engine(empty_db_url) for _ in range(racers)]
    start = threading.Barrier(racers)

    def deliver(own: Engine) -> tuple[str, bool]:
        start.wait()
        job, created = create_job_once(own, request_key="raced", **FIELDS)
        return job.id, created

    try:
        with ThreadPoolExecutor(racers) as pool:
            results = list(pool.map(deliver, engines))
    finally:
        for own in engines:
            own.dispose()
    assert len({job_id for job_id, _ in results}) == 1
    assert [created for _, created in results].count(True) == 1
    assert _counts(engine) == (1, 1, 1)  # the losers left no model or event behind


def test_a_new_job_wakes_the_workers_and_the_notifier(engine: Engine) -> None:
    wakeups = [Wakeup(engine, channel) for channel in (JOBS_CHANNEL, EVENTS_CHANNEL)]
    try:
        for wakeup in wakeups:
            wakeup.start()
            # SQLite has no NOTIFY: a commit wakes this process's own wake-ups.
            assert engine.dialect.name == "sqlite" or wakeup.wait_listening(10)
            wakeup.wait(0)  # nothing pending before the job
        create_job_once(engine, request_key="k4", **FIELDS)
        assert all(wakeup.wait(5) for wakeup in wakeups)
    finally:
        for wakeup in wakeups:
            wakeup.stop()


def test_postgresql_records_a_submission_in_one_statement(postgres_engine: Engine) -> None:
    """One round trip before the ack: no lookup first, no BEGIN or COMMIT of its own."""
    engine = postgres_engine
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    create_job_once(engine, request_key="warm", **FIELDS)  # the pool's first connection
    event.listen(engine, "before_cursor_execute", seen)
    try:
        create_job_once(engine, request_key="k5", **FIELDS)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert len(statements) == 1, statements
    assert _counts(engine) == (2, 2, 2)
