"""A training script that prints thousands of lines, through the real pipeline (local
sandbox) on SQLite and PostgreSQL: the whole output in the job's train.log artifact, its
head and tail in job_events, whatever way training ends."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy.engine import Engine

from bot.service import log_lines
from pipeline.command_log import TRAIN_LOG, skipped_notes
from pipeline.limits import FAILURE_LOG_LINES, LOG_HEAD_LINES, LOG_TAIL_LINES
from pipeline.service import JobService
from storage import queries
from storage.db import session_scope
from storage.models import JobEvent
from storage.states import JobStatus
from tests.support.cli import cli_env as cli_env_fixture
from tests.support.cli import trainbot
from tests.support.noisy import NoisyGenerator, printed_line
from tests.support.pipeline import cancel, make_settings, start_services, submit, wait_for

LINES = 3000  # well past head + tail, so lines are skipped
PRINTED = [printed_line(n) for n in range(1, LINES + 1)]
# Our own code (the template's, with a loop of prints), so it may run unisolated here.
SETTINGS = {"TRAINBOT_ALLOW_UNISOLATED_CODE": True}

cli_env = cli_env_fixture  # the fixture by name, so pytest finds it in this module


def _logs(engine: Engine, job_id: str) -> list[JobEvent]:
    with session_scope(engine) as session:
        return queries.list_events(session, job_id=job_id, kinds=["log"])


def _output(events: list[JobEvent]) -> list[str]:
    """The stored lines the script printed (the sandbox adds none for a clean run)."""
    return [e.message for e in events if "log_file" not in e.data]


def test_a_noisy_job_keeps_every_line_in_its_artifact_and_its_ends_in_events(
    engine: Engine, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    settings = make_settings(tmp_path, **SETTINGS)
    services = start_services(engine, settings, codegen=NoisyGenerator(LINES))
    try:
        job = wait_for(services, submit(services, dataset_source="iris"))
    finally:
        services.worker.shutdown()
    assert job.status == JobStatus.LIVE, job.error

    log_file = Path((job.artifacts or {})[TRAIN_LOG])
    assert log_file == settings.data_dir / "jobs" / job.id / "artifacts" / TRAIN_LOG
    printed = log_file.read_text().splitlines()
    assert printed[:LINES] == PRINTED  # then whatever the template's training prints

    events = _logs(engine, job.id)
    head, note = events[:LOG_HEAD_LINES], events[LOG_HEAD_LINES]
    assert [e.message for e in head] == PRINTED[:LOG_HEAD_LINES]
    assert [e.message for e in events[LOG_HEAD_LINES + 1 :]] == printed[-LOG_TAIL_LINES:]
    [skipped] = skipped_notes(events)
    assert skipped.log_file == str(log_file) and skipped.complete
    assert skipped.skipped == len(printed) - LOG_HEAD_LINES - LOG_TAIL_LINES == note.data["skipped"]

    # /train logs counts every line the script printed, not only the stored ones.
    _, shown, total = log_lines(JobService(engine, None, settings.app_ttl), job.id)
    assert printed[-1] in shown and total >= len(printed)

    # `trainbot logs` says where the rest is.
    cli_env["DATABASE_URL"] = engine.url.render_as_string(hide_password=False)
    shown_logs = trainbot(tmp_path, cli_env, "logs", job.short_id)
    assert shown_logs.returncode == 0, shown_logs.stderr
    assert f"the full output (all of them) is in {log_file}" in shown_logs.stdout


def test_a_failed_noisy_job_ends_its_events_with_the_real_last_lines(
    engine: Engine, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, **SETTINGS)
    noisy = NoisyGenerator(LINES, ending="raise SystemExit(3)\n")
    services = start_services(engine, settings, codegen=noisy)
    try:
        job = wait_for(services, submit(services, dataset_source="iris"))
    finally:
        services.worker.shutdown()
    assert (job.status, job.stage) == (JobStatus.FAILED, "train"), job.error

    events = _logs(engine, job.id)
    # What the failure reply shows when the failure has no detail (bot/job_messages.py).
    assert [e.message for e in events[-FAILURE_LOG_LINES:]] == PRINTED[-FAILURE_LOG_LINES:]
    assert _output(events) == PRINTED[:LOG_HEAD_LINES] + PRINTED[-LOG_TAIL_LINES:]
    [skipped] = skipped_notes(events)
    assert Path(skipped.log_file).read_text().splitlines() == PRINTED


def test_a_cancelled_noisy_job_stores_its_head_live_and_its_tail_at_the_end(
    engine: Engine, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, **SETTINGS)
    hang = "import time\nprint('waiting', flush=True)\ntime.sleep(120)\n"
    services = start_services(engine, settings, codegen=NoisyGenerator(LINES, ending=hang))
    try:
        job_id = submit(services, dataset_source="iris")
        deadline = time.monotonic() + 60
        while len(_logs(engine, job_id)) < LOG_HEAD_LINES:  # while the script still runs
            assert time.monotonic() < deadline, "the head was not stored while training ran"
            time.sleep(0.1)
        log_file = settings.data_dir / "jobs" / job_id / "artifacts" / TRAIN_LOG
        while "waiting" not in log_file.read_text():  # the file is flushed as it goes
            assert time.monotonic() < deadline, "the script's last line never arrived"
            time.sleep(0.1)
        cancel(services, job_id)
        wait_for(services, job_id, {JobStatus.CANCELLED})
        deadline = time.monotonic() + 30
        while not skipped_notes(_logs(engine, job_id)):  # the runner stores it as it stops
            assert time.monotonic() < deadline, "the end of the output was never stored"
            time.sleep(0.1)
    finally:
        services.worker.shutdown()

    expected = [*PRINTED, "waiting"]
    assert _output(_logs(engine, job_id)) == expected[:LOG_HEAD_LINES] + expected[-LOG_TAIL_LINES:]
    assert log_file.read_text().splitlines() == expected
