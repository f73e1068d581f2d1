"""The training budget end to end: from the submitter (the CLI, a stored job) through the
worker's runner to the task.json the training script reads in a real local sandbox."""

from __future__ import annotations

import json
import re
from pathlib import Path

from sqlalchemy.engine import Engine

from pipeline.events import EventKind
from storage import queries
from storage.db import session_scope
from storage.states import JobStatus
from tests.support.cli import CliRun, trainbot
from tests.support.cli import cli_env as cli_env_fixture
from tests.support.pipeline import (
    ScriptedGenerator,
    event_messages,
    make_settings,
    start_services,
    submit,
    wait_for,
)

cli_env = cli_env_fixture

# Prints the budget task.json gave it, then stops: what the worker passed on, in the job's log.
PRINT_BUDGET = (
    "import json\n"
    "print('budget from task.json:', json.load(open('task.json'))['time_budget_seconds'])\n"
    "raise SystemExit('stopped on purpose')\n"
)


def _budget_seen(
    engine: Engine, tmp_path: Path, *, submitted: int | None, **settings: object
) -> tuple[float, list[str]]:
    """The budget the script read, and the job's warnings about it."""
    # Scripted code is not the template's: without bubblewrap it runs only when allowed.
    settings.setdefault("TRAINBOT_ALLOW_UNISOLATED_CODE", True)
    services = start_services(
        engine,
        make_settings(tmp_path, **settings),
        codegen=ScriptedGenerator(train_py=PRINT_BUDGET),
    )
    try:
        job_id = submit(services, dataset_source="iris", time_budget_seconds=submitted)
        job = wait_for(services, job_id)
    finally:
        services.worker.shutdown()
    assert (job.status, job.stage) == (JobStatus.FAILED, "train")
    logs = event_messages(services, job_id, EventKind.LOG.value)
    seen = [float(m.split(":")[1]) for m in logs if m.startswith("budget from task.json:")]
    assert len(seen) == 1, logs
    with session_scope(engine) as session:
        granted = [
            e.data["time_budget_seconds"]
            for e in queries.list_events(session, job_id=job_id, kinds=["progress"])
            if "time_budget_seconds" in e.data
        ]
    assert granted == seen  # what the thread and the card say is what the script got
    warnings = event_messages(services, job_id, EventKind.WARNING.value)
    return seen[0], [w for w in warnings if "budget" in w]


def test_the_submitted_budget_reaches_task_json(sqlite_engine: Engine, tmp_path: Path) -> None:
    seen, warnings = _budget_seen(sqlite_engine, tmp_path, submitted=15)
    assert seen == 15.0
    assert warnings == []


def test_a_job_without_a_budget_gets_the_workers_setting(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    seen, _ = _budget_seen(
        sqlite_engine, tmp_path, submitted=None, TRAINBOT_TRAIN_BUDGET_SECONDS=25
    )
    assert seen == 25.0


def test_a_budget_the_workers_timeout_cannot_hold_is_lowered_with_a_warning(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    # Submitted where TRAINBOT_TRAIN_TIMEOUT allowed 10 min; this worker's 120 s allows 60 s.
    seen, warnings = _budget_seen(sqlite_engine, tmp_path, submitted=600)
    assert seen == 60.0
    assert any("10 min does not fit" in w and "gets 1 min" in w for w in warnings), warnings


def test_trainbot_run_budget_reaches_a_real_template_job(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    run = CliRun(
        ["--name", "quick", "--dataset", "iris", "--budget", "15s", "--ttl", "60"],
        tmp_path,
        cli_env,
    )
    try:
        run.live_url()
        # The job's sandbox holds what the template read while it trained.
        tasks = list((tmp_path / ".trainbot" / "sandboxes").glob("*/work/task.json"))
        assert len(tasks) == 1, tasks
        assert json.loads(tasks[0].read_text())["time_budget_seconds"] == 15.0
        job_id = re.search(r"Job ([0-9a-f]{8}) queued", "\n".join(run.lines)).group(1)  # type: ignore[union-attr]
        status = trainbot(tmp_path, cli_env, "status", job_id)
        assert re.search(r"budget\s+15 s of training search", status.stdout), status.stdout
        assert run.interrupt() == 0
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
    assert "training budget: 15 s" in run.output()
