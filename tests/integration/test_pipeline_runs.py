"""Whole jobs through the real pipeline (template code, local sandbox), on SQLite and PostgreSQL."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine

from pipeline.bootstrap import Services
from pipeline.events import EventKind, RecordingSink
from storage import queries
from storage.db import session_scope
from storage.states import JobStatus
from tests.support.pipeline import (
    ScriptedGenerator,
    cancel,
    event_messages,
    get,
    make_settings,
    start_services,
    submit,
    wait_for,
    wait_until_down,
)

SLEEPING_TRAIN = "import time\nprint('training started', flush=True)\ntime.sleep(120)\n"


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def services(engine: Engine, tmp_path: Path, sink: RecordingSink) -> Iterator[Services]:
    services = start_services(engine, make_settings(tmp_path), sink)
    yield services
    services.worker.shutdown()


def _csv(tmp_path: Path, text: str, name: str = "data.csv") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_iris_job_goes_live_verified_and_can_be_stopped(
    services: Services, sink: RecordingSink
) -> None:
    job_id = submit(
        services, dataset_source="iris", resources=["http://10.0.0.1/notes.html"], goal="species"
    )
    job = wait_for(services, job_id)
    assert job.status == JobStatus.LIVE, job.error
    assert job.deployment_url and job.deployment_url.startswith("http://127.0.0.1:")
    with session_scope(services.engine) as session:
        model = queries.get_model(session, model_id=job.model_id)
    assert model is not None and model.deployed_url == job.deployment_url
    assert model.task_type == "classification"

    assert job.metrics is not None and job.metrics["score"] >= 0.93
    assert job.metrics["score"] > job.metrics["baseline"]
    assert job.artifacts is not None and Path(job.artifacts["chart.png"]).stat().st_size > 1000
    assert set(job.stage_timings) == {"resources", "dataset", "codegen", "train", "deploy"}

    answer = httpx.post(
        job.deployment_url + "predict",
        json={
            "rows": [
                {
                    "sepal length (cm)": 6.7,
                    "sepal width (cm)": 3.0,
                    "petal length (cm)": 5.2,
                    "petal width (cm)": 2.3,
                }
            ]
        },
    )
    assert answer.status_code == 200
    assert answer.json()["predictions"] == ["virginica"]

    # A reference link at a private address is a warning, never fatal.
    warnings = event_messages(services, job_id, "warning")
    assert any("10.0.0.1" in w for w in warnings)
    started = [e.stage for e in sink.of_kind(EventKind.STARTED)]
    assert started == ["resources", "dataset", "codegen", "train", "deploy"]
    assert any("verified" in m for m in event_messages(services, job_id, "progress"))
    assert event_messages(services, job_id, "log"), "training output is streamed into job_events"

    cancel(services, job_id)
    assert get(services, job_id).status == JobStatus.CANCELLED
    wait_until_down(job.deployment_url or "")


def test_live_app_expires_after_its_ttl(services: Services) -> None:
    job_id = submit(services, dataset_source="iris", ttl_seconds=2)
    job = wait_for(services, job_id)
    assert job.status == JobStatus.LIVE, job.error
    job = wait_for(services, job_id, {JobStatus.EXPIRED}, timeout=30)
    wait_until_down(job.deployment_url or "")
    with session_scope(services.engine) as session:
        model = queries.get_model(session, model_id=job.model_id)
    assert model is not None and model.deployed_url is None
    assert any("lifetime" in m for m in event_messages(services, job_id, "finished"))


@pytest.mark.parametrize(
    ("source", "target", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/data.csv", None, "169.254.169.254"),
        ("ftp://example.com/data.csv", None, "http"),
        ("no/such/file.csv", "y", "no/such/file.csv"),
    ],
)
def test_bad_dataset_sources_fail_in_the_dataset_stage(
    services: Services, source: str, target: str | None, reason: str
) -> None:
    job_id = submit(services, dataset_source=source, target_column=target)
    job = wait_for(services, job_id)
    assert (job.status, job.stage) == (JobStatus.FAILED, "dataset")
    assert reason in (job.error or "")
    assert job.sandbox_id is None  # nothing ran


def test_missing_constant_and_small_data_fail_with_reasons(
    services: Services, tmp_path: Path
) -> None:
    rows = "\n".join(f"{i},{i * 2},yes" for i in range(40))
    constant = _csv(tmp_path, "a,b,label\n" + rows, "constant.csv")
    small = _csv(tmp_path, "a,b,label\n1,2,x\n3,4,y\n", "small.csv")
    cases = {
        submit(services, dataset_source=constant, target_column="nope"): "label",
        submit(
            services, dataset_source=constant, target_column=" LABEL "
        ): "(?i)every row has label",
        submit(services, dataset_source=small, target_column="label"): "at least 20",
    }
    for job_id, pattern in cases.items():
        job = wait_for(services, job_id)
        assert (job.status, job.stage) == (JobStatus.FAILED, "dataset"), job.error
        assert re.search(pattern, job.error or ""), job.error
        assert any(job.error == m for m in event_messages(services, job_id, "failed"))


def test_training_crash_fails_with_the_error_line(engine: Engine, tmp_path: Path) -> None:
    codegen = ScriptedGenerator(train_py="raise RuntimeError('boom in training')\n")
    services = start_services(engine, make_settings(tmp_path), codegen=codegen)
    try:
        job = wait_for(services, submit(services, dataset_source="iris"))
    finally:
        services.worker.shutdown()
    assert (job.status, job.stage) == (JobStatus.FAILED, "train")
    assert "RuntimeError: boom in training" in (job.error or "")
    assert "Traceback" not in (job.error or "")  # the reason is one line; the log has the rest


def test_training_timeout_stops_the_script(engine: Engine, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, TRAINBOT_TRAIN_TIMEOUT=5)
    services = start_services(engine, settings, codegen=ScriptedGenerator(train_py=SLEEPING_TRAIN))
    try:
        started = time.monotonic()
        job = wait_for(services, submit(services, dataset_source="iris"))
    finally:
        services.worker.shutdown()
    assert (job.status, job.stage) == (JobStatus.FAILED, "train")
    assert "within 5 seconds" in (job.error or "")
    assert time.monotonic() - started < 30


@pytest.mark.parametrize(
    ("app_source", "reason"),
    [
        ("import time\ntime.sleep(600)\n", "did not answer within 3 seconds"),
        ("raise SystemExit('port is cursed')\n", "port is cursed"),
    ],
)
def test_app_that_never_answers_fails_deploy_and_is_killed(
    engine: Engine, tmp_path: Path, app_source: str, reason: str
) -> None:
    settings = make_settings(tmp_path, TRAINBOT_APP_START_TIMEOUT=3)
    services = start_services(engine, settings, codegen=ScriptedGenerator(app_py=app_source))
    try:
        job = wait_for(services, submit(services, dataset_source="iris"))
    finally:
        services.worker.shutdown()
    assert (job.status, job.stage) == (JobStatus.FAILED, "deploy")
    assert reason in (job.error or "")
    assert job.sandbox_id and not (settings.data_dir / "sandboxes" / job.sandbox_id).exists()


def test_cancel_during_training_kills_the_sandbox(engine: Engine, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    services = start_services(engine, settings, codegen=ScriptedGenerator(train_py=SLEEPING_TRAIN))
    try:
        job_id = submit(services, dataset_source="iris")
        wait_for(services, job_id, {JobStatus.TRAINING})
        deadline = time.monotonic() + 20
        while "training started" not in event_messages(services, job_id, "log"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        cancelled_at = time.monotonic()
        cancel(services, job_id)
        job = wait_for(services, job_id, {JobStatus.CANCELLED})
        assert [m for m in event_messages(services, job_id, "finished") if m == "cancelled"] == [
            "cancelled"
        ]  # written once, by the cancel itself
        assert job.sandbox_id
        sandbox_dir = settings.data_dir / "sandboxes" / job.sandbox_id
        deadline = time.monotonic() + 10
        while sandbox_dir.exists():
            assert time.monotonic() < deadline, "the runner never noticed the cancel"
            time.sleep(0.1)
        assert time.monotonic() - cancelled_at < 5
    finally:
        services.worker.shutdown()


def test_jobs_run_concurrently_up_to_the_limit_and_queued_jobs_can_be_cancelled(
    engine: Engine, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, TRAINBOT_MAX_CONCURRENT_JOBS=2)
    services = start_services(engine, settings, codegen=ScriptedGenerator(train_py=SLEEPING_TRAIN))
    try:
        first, second, third = (submit(services, dataset_source="iris") for _ in range(3))
        wait_for(services, first, {JobStatus.TRAINING}, timeout=30)
        wait_for(services, second, {JobStatus.TRAINING}, timeout=30)
        time.sleep(0.5)
        assert get(services, third).status == JobStatus.QUEUED
        cancel(services, third)
        for job_id in (first, second):
            cancel(services, job_id)
        for job_id in (first, second, third):
            wait_for(services, job_id, {JobStatus.CANCELLED})
        assert get(services, third).started_at is None
    finally:
        services.worker.shutdown()


def _held_by_a_dead_worker(engine: Engine, *, runs: int) -> str:
    """A job a worker claimed and started, then stopped renewing (it was SIGKILLed)."""
    with session_scope(engine) as session:
        job = queries.create_job(session, name="x", dataset_source="iris")
        job.worker_id, job.runs = "gone-host:1:abc", runs
        job.lease_expires_at = datetime.now(UTC) - timedelta(seconds=1)
        session.add(job)
        session.flush()
        queries.transition(session, job_id=job.id, to=JobStatus.FETCHING_RESOURCES)
        queries.transition(session, job_id=job.id, to=JobStatus.LOADING_DATA)
        return job.id


def test_a_job_whose_worker_died_runs_again_from_the_start(engine: Engine, tmp_path: Path) -> None:
    interrupted = _held_by_a_dead_worker(engine, runs=1)
    with session_scope(engine) as session:
        waiting = queries.create_job(session, name="y", dataset_source="iris").id
    services = start_services(engine, make_settings(tmp_path, TRAINBOT_MAX_RUNS=3))
    try:
        job = wait_for(services, interrupted)
        assert job.status == JobStatus.LIVE and job.runs == 2
        assert job.worker_id == services.worker.id  # a local app is held by its worker
        told = [m for m in event_messages(services, interrupted, "warning") if "stopped" in m]
        assert told == ["the worker running this job stopped; starting again, attempt 2 of 3"]
        assert wait_for(services, waiting).status == JobStatus.LIVE
    finally:
        services.worker.shutdown()


def test_a_job_whose_worker_died_too_often_fails_with_the_reason(
    engine: Engine, tmp_path: Path
) -> None:
    interrupted = _held_by_a_dead_worker(engine, runs=2)
    services = start_services(engine, make_settings(tmp_path, TRAINBOT_MAX_RUNS=2))
    try:
        job = wait_for(services, interrupted)
        assert (job.status, job.runs) == (JobStatus.FAILED, 2)
        assert job.error == "the worker running this job stopped 2 times; retry it to run it again"
        assert event_messages(services, interrupted, "failed") == [job.error]
    finally:
        services.worker.shutdown()


def test_a_drain_hands_running_jobs_back_to_the_queue(engine: Engine, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    services = start_services(engine, settings, codegen=ScriptedGenerator(train_py=SLEEPING_TRAIN))
    job_id = submit(services, dataset_source="iris")
    wait_for(services, job_id, {JobStatus.TRAINING})
    started = time.monotonic()
    services.worker.drain(grace=0.5)
    assert time.monotonic() - started < 10
    job = get(services, job_id)
    assert (job.status, job.worker_id, job.runs) == (JobStatus.QUEUED, None, 0)
    assert job.sandbox_id and not (settings.data_dir / "sandboxes" / job.sandbox_id).exists()
    assert any("goes back to the queue" in m for m in event_messages(services, job_id, "warning"))
    assert not event_messages(services, job_id, "failed")


def test_shutdown_fails_running_jobs_with_a_reason_to_retry(engine: Engine, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    services = start_services(engine, settings, codegen=ScriptedGenerator(train_py=SLEEPING_TRAIN))
    job_id = submit(services, dataset_source="iris")
    wait_for(services, job_id, {JobStatus.TRAINING})
    # The stage starts before its sandbox exists; stop once the script runs in it (on a
    # busy machine the shutdown otherwise came first and there was no sandbox to check).
    deadline = time.monotonic() + 30
    while "training started" not in event_messages(services, job_id, "log"):
        assert time.monotonic() < deadline, "train.py never started"
        time.sleep(0.05)
    services.worker.shutdown()
    job = get(services, job_id)
    assert (job.status, job.stage) == (JobStatus.FAILED, "train")
    assert "service stopped" in (job.error or "") and "retry" in (job.error or "")
    assert job.sandbox_id and not (settings.data_dir / "sandboxes" / job.sandbox_id).exists()
    assert event_messages(services, job_id, "failed") == [job.error]
