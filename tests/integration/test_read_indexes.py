"""The reads Slack and the status API make, at some size, on SQLite and PostgreSQL: migration
0006's indexes up and down, every read seeking by the index made for it (so dropping one
fails here, not in production at 10,000 jobs), and the batched queries a page of jobs uses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import insert, inspect, text
from sqlalchemy.engine import Engine

from bench.reads import bot_reads, status_api
from bench.reads_seed import seed_jobs
from storage import queries
from storage.db import downgrade, make_engine, session_scope, upgrade
from storage.models import AiModel, TrainingJob
from tests.support.query_plans import Plan, plans_of

ADDED = {
    "training_jobs": {
        "ix_training_jobs_channel_team_created": ["channel_id", "team_id", "created_at", "id"],
        "ix_training_jobs_requester_team_created": ["requested_by", "team_id", "created_at", "id"],
        "ix_training_jobs_team_id_id": ["team_id", "id"],
    },
    "job_events": {"ix_job_events_job_id_id": ["job_id", "id"]},
}
REPLACED = {
    "training_jobs": {
        "ix_training_jobs_channel_id": ["channel_id"],
        "ix_training_jobs_team_id": ["team_id"],
    },
    "job_events": {"ix_job_events_job_id": ["job_id"]},
}
# The indexes each read must seek by, as the plans showed they do.
EXPECTED = {
    "/train list": ["ix_training_jobs_channel_team_created"],
    "/train status": ["ix_training_jobs_requester_team_created", "ix_job_events_job_id_id"],
    "App Home": ["ix_training_jobs_requester_team_created"],
    "status API": ["ix_training_jobs_team_id_id"],
}


def _indexes(engine: Engine, table: str) -> dict[str, list[str]]:
    found = inspect(engine).get_indexes(table)
    return {str(i["name"]): [str(c) for c in i["column_names"]] for i in found}


def _has(engine: Engine, wanted: dict[str, dict[str, list[str]]]) -> bool:
    return all(
        _indexes(engine, table).get(name) == columns
        for table, indexes in wanted.items()
        for name, columns in indexes.items()
    )


def _lacks(engine: Engine, unwanted: dict[str, dict[str, list[str]]]) -> bool:
    return all(
        not set(indexes) & set(_indexes(engine, table)) for table, indexes in unwanted.items()
    )


def test_0006_replaces_the_one_column_indexes_and_puts_them_back(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    upgrade(engine, "0005")
    assert _has(engine, REPLACED) and _lacks(engine, ADDED)
    with session_scope(engine) as session:
        job_id = queries.create_job(
            session, name="old", dataset_source="iris", channel_id="C1", team_id="T1"
        ).id

    upgrade(engine, "0006")
    assert _has(engine, ADDED) and _lacks(engine, REPLACED)
    with session_scope(engine) as session:  # the job is found through the new indexes
        assert [j.id for j in queries.list_jobs(session, channel_id="C1", team_id="T1")] == [job_id]

    downgrade(engine, "0005")
    assert _has(engine, REPLACED) and _lacks(engine, ADDED)
    with session_scope(engine) as session:
        assert queries.get_job(session, job_id=job_id) is not None
    upgrade(engine)
    assert _has(engine, ADDED) and _lacks(engine, REPLACED)
    engine.dispose()


def test_every_read_seeks_by_its_index(engine: Engine, tmp_path: Path) -> None:
    """The four reads of bench/reads.py, on a few hundred jobs: each statement they send
    seeks (no SCAN, no Seq Scan even where PostgreSQL's planner would prefer one on so few
    rows), no read sorts all of a person's or channel's jobs to find the newest, and each
    uses the indexes made for it."""
    seeded = seed_jobs(engine, jobs=300)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    with status_api(engine, tmp_path / "api") as base_url, httpx.Client() as client:
        reads = bot_reads(engine, seeded, client, base_url)
        assert set(reads) == set(EXPECTED)
        for name, read in reads.items():
            plans = plans_of(engine, read)
            problems = [
                (plan.statement, plan.lines)
                for plan in plans
                if plan.full_scans() or plan.sorts("training_jobs")
            ]
            assert problems == [], name
            for index in EXPECTED[name]:
                assert any(plan.uses(index) for plan in plans), (name, index, _lines(plans))


def _lines(plans: list[Plan]) -> list[list[str]]:
    return [plan.lines for plan in plans]


def _job_row(job_id: str, model_id: str, created: datetime) -> dict[str, object]:
    return {
        "id": job_id,
        "model_id": model_id,
        "status": "queued",
        "attempt": 1,
        "dataset_source": "iris",
        "goal": "",
        "resources": [],
        "requested_by": "U1",
        "origin": "cli",
        "ttl_seconds": 3600,
        "runs": 0,
        "stage_timings": {},
        "team_id": "T1",
        "created_at": created,
        "updated_at": created,
    }


def test_an_id_prefix_finds_exactly_the_ids_it_starts(engine: Engine) -> None:
    """`find_job` seeks the range [ref, ref + "g"): ids just outside it on either side
    (the next and previous prefix) are not found, ids inside are."""
    now = datetime.now(UTC)
    ids = ["abce" + "f" * 28, "abcf" + "0" * 28, "abcf" + "f" * 28, "abd0" + "0" * 28]
    with engine.begin() as conn:
        conn.execute(
            insert(AiModel),
            [
                {
                    "id": "m1",
                    "name": "m",
                    "goal": "",
                    "dataset_source": "iris",
                    "created_by": "U1",
                    "created_at": now,
                    "updated_at": now,
                }
            ],
        )
        conn.execute(
            insert(TrainingJob),
            [_job_row(job_id, "m1", now + timedelta(seconds=i)) for i, job_id in enumerate(ids)],
        )
    with session_scope(engine) as session:
        with pytest.raises(queries.JobLookupError, match="several jobs"):
            queries.find_job(session, ref="abcf", team_id="T1")
        for job_id in ids:
            assert queries.find_job(session, ref=job_id[:5], team_id="T1").id == job_id
            assert queries.find_job(session, ref=job_id).id == job_id  # every workspace
        assert queries.find_job(session, ref="abce", team_id="T1").id == ids[0]
        with pytest.raises(queries.JobLookupError, match="no job"):
            queries.find_job(session, ref="abcf", team_id="T2")


def test_a_page_of_jobs_reads_its_models_and_events_in_one_query_each(engine: Engine) -> None:
    with session_scope(engine) as session:
        jobs = [
            queries.create_job(session, name=f"model {n}", dataset_source="iris") for n in range(3)
        ]
        for job in jobs[:2]:
            for kind in ("started", "log", "progress"):
                queries.add_event(
                    session, job_id=job.id, kind=kind, stage="train", message=f"{kind} {job.id}"
                )
    ids = [job.id for job in jobs]
    with session_scope(engine) as session:
        names = queries.model_names(session, model_ids=[job.model_id for job in jobs] * 2)
        assert names == {job.model_id: f"model {n}" for n, job in enumerate(jobs)}
        events = queries.events_of_jobs(
            session, job_ids=ids, kinds=["queued", "started", "progress"]
        )
        assert set(events) == set(ids)
        for job in jobs:
            one_by_one = queries.list_events(
                session, job_id=job.id, kinds=["queued", "started", "progress"]
            )
            assert [e.id for e in events[job.id]] == [e.id for e in one_by_one]
        assert [e.kind for e in events[ids[0]]] == ["queued", "started", "progress"]
        assert [e.kind for e in events[ids[2]]] == ["queued"]
        assert queries.model_names(session, model_ids=[]) == {}
        assert queries.events_of_jobs(session, job_ids=[]) == {}
