"""A job's training budget: how it is written, the range the settings allow, the service's
check, the CLI's --budget, and what the card, `/train status` and task.json say of it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy.engine import Engine

from bot import blocks
from bot.cli import build_parser, main, run_budget
from bot.snapshot import build_snapshot
from bot.web import job_status
from pipeline.budget import (
    MAX_BUDGET,
    MIN_BUDGET,
    BudgetError,
    BudgetRange,
    budget_range,
    format_budget,
    largest_budget,
    parse_budget,
    timeout_needed,
)
from pipeline.codegen.base import ColumnInfo, TaskSpec, TaskType
from pipeline.service import BudgetRefused, JobRequest
from pipeline.settings import Settings
from storage import queries
from storage.db import session_scope
from storage.models import JobEvent, TrainingJob, utcnow
from tests.support.databases import in_memory_engine
from tests.support.snapshots import make_snapshot
from tests.unit.test_service import FakeWorker, make_service

# -- what people write ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("90s", 90),
        ("90 s", 90),
        (" 45 sec ", 45),
        ("30 seconds", 30),
        ("2m", 120),
        ("2 min", 120),
        ("2M", 120),
        ("1.5m", 90),
        ("10 minutes", 600),
        ("12.4", 12),
    ],
)
def test_budgets_are_read_in_seconds_or_minutes(text: str, seconds: int) -> None:
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["", "fast", "5x", "-30", "2h", "1e3", "nan", "1m30s", "m"])
def test_a_budget_that_is_not_a_time_says_how_to_write_one(text: str) -> None:
    with pytest.raises(BudgetError) as raised:
        parse_budget(text)
    assert "90, 90s or 2m" in str(raised.value)


@pytest.mark.parametrize(
    ("seconds", "shown"), [(30, "30 s"), (60, "1 min"), (90, "1 min 30 s"), (600, "10 min")]
)
def test_budgets_read_as_the_form_offers_them(seconds: int, shown: str) -> None:
    assert format_budget(seconds) == shown


# -- the room the training timeout keeps above the budget ----------------------------------


@pytest.mark.parametrize("timeout", [70, 100, 120, 179, 180, 181, 300, 900, 2700, 5000])
def test_the_largest_budget_is_the_longest_that_fits_the_timeout(timeout: int) -> None:
    most = largest_budget(timeout)
    assert most is not None
    assert timeout_needed(most) <= timeout
    assert most == MAX_BUDGET or timeout_needed(most + 1) > timeout


def test_the_timeout_keeps_at_least_a_minute_and_half_the_budget_beyond_it() -> None:
    assert timeout_needed(60) == 120
    assert timeout_needed(600) == 900
    assert timeout_needed(1800) == 2700
    assert largest_budget(900) == 600  # the defaults offer up to 10 minutes
    assert largest_budget(69) is None  # not even MIN_BUDGET fits


# -- settings ------------------------------------------------------------------------------


def test_the_default_budget_is_a_minute_within_the_default_timeout() -> None:
    assert Settings().train_budgets == BudgetRange(default=60, most=600)


def test_the_budget_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAINBOT_TRAIN_BUDGET_SECONDS", "120")
    assert Settings().train_budgets.default == 120


@pytest.mark.parametrize("budget", [MIN_BUDGET - 1, MAX_BUDGET + 1])
def test_a_budget_setting_out_of_bounds_is_a_settings_error(budget: int) -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(TRAINBOT_TRAIN_BUDGET_SECONDS=budget, TRAINBOT_TRAIN_TIMEOUT=5000)
    assert "TRAINBOT_TRAIN_BUDGET_SECONDS" in str(raised.value)


def test_the_largest_budget_setting_fits_a_long_enough_timeout() -> None:
    settings = Settings(TRAINBOT_TRAIN_BUDGET_SECONDS=MAX_BUDGET, TRAINBOT_TRAIN_TIMEOUT=2700)
    assert settings.train_budgets == BudgetRange(default=MAX_BUDGET, most=MAX_BUDGET)


def test_a_budget_setting_the_timeout_cannot_hold_is_refused_naming_the_fix() -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(TRAINBOT_TRAIN_BUDGET_SECONDS=601)  # TRAINBOT_TRAIN_TIMEOUT: 900
    message = str(raised.value)
    assert "TRAINBOT_TRAIN_TIMEOUT=900" in message
    assert "at least 902" in message and "at most 600" in message


def test_an_unset_budget_is_lowered_to_fit_a_short_timeout() -> None:
    assert Settings(TRAINBOT_TRAIN_TIMEOUT=100).train_budgets == BudgetRange(default=40, most=40)
    # So short that no budget worth asking for fits: half of it, and none may be asked.
    assert Settings(TRAINBOT_TRAIN_TIMEOUT=5).train_budgets == BudgetRange(default=2, most=None)


def test_the_cli_says_a_budget_setting_that_does_not_fit_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TRAINBOT_TRAIN_BUDGET_SECONDS", "900")
    assert main(["jobs"]) == 2
    err = capsys.readouterr().err
    assert "Configuration error: TRAINBOT_TRAIN_BUDGET_SECONDS" in err
    assert "Traceback" not in err


# -- the range a job may ask for ------------------------------------------------------------


def test_a_range_refuses_budgets_outside_it_naming_the_range() -> None:
    budgets = BudgetRange(default=60, most=600)
    assert budgets.problem(10) is None and budgets.problem(600) is None
    for seconds in (9, 601):
        assert "between 10 s and 10 min" in (budgets.problem(seconds) or "")


def test_a_job_gets_what_it_asked_or_the_most_this_worker_allows_with_a_warning() -> None:
    budgets = BudgetRange(default=60, most=120)
    assert budgets.granted(None) == (60, None)
    assert budgets.granted(90) == (90, None)
    seconds, warning = budgets.granted(600)
    assert seconds == 120
    assert "10 min" in (warning or "") and "TRAINBOT_TRAIN_TIMEOUT" in (warning or "")


def test_with_no_room_for_a_choice_only_the_default_is_taken() -> None:
    budgets = budget_range(train_timeout=5, default=None)
    assert budgets.problem(budgets.default) is None
    assert "TRAINBOT_TRAIN_TIMEOUT must be at least 70 s" in (budgets.problem(30) or "")


# -- the service ---------------------------------------------------------------------------


@pytest.fixture
def engine() -> Iterator[Engine]:
    yield from in_memory_engine()


def _request(**fields: Any) -> JobRequest:
    return JobRequest(name="iris", dataset_source="iris", requested_by="U1", origin="cli", **fields)


def test_submit_records_the_chosen_budget_and_none_for_the_default(engine: Engine) -> None:
    jobs = make_service(engine, FakeWorker(), budgets=BudgetRange(default=60, most=600))
    chosen = jobs.submit(_request(time_budget_seconds=300)).job
    default = jobs.submit(_request()).job
    with session_scope(engine) as session:
        assert queries.get_job(session, job_id=chosen.id).time_budget_seconds == 300  # type: ignore[union-attr]
        assert queries.get_job(session, job_id=default.id).time_budget_seconds is None  # type: ignore[union-attr]


def test_submit_refuses_a_budget_the_settings_do_not_allow(engine: Engine) -> None:
    jobs = make_service(engine, FakeWorker(), budgets=BudgetRange(default=60, most=120))
    with pytest.raises(BudgetRefused, match="between 10 s and 2 min"):
        jobs.submit(_request(time_budget_seconds=300))
    with session_scope(engine) as session:
        assert queries.count_jobs(session) == 0


# -- the command line ----------------------------------------------------------------------


def test_run_takes_a_budget_flag() -> None:
    args = build_parser().parse_args(["run", "--name", "x", "--dataset", "iris", "--budget", "2m"])
    assert run_budget(args.budget, Settings()) == (120, None)
    assert run_budget(None, Settings()) == (None, None)


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("soon", "'soon' is not a training time: give seconds or minutes, such as 90, 90s or 2m"),
        ("5", "between 10 s and 10 min"),
        ("11m", "a training budget of 11 min is out of range: give one between 10 s and 10 min"),
    ],
)
def test_run_refuses_a_bad_budget_before_starting_anything(
    value: str,
    said: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)  # the default SQLite file would land here if anything started
    code = main(["run", "--name", "x", "--dataset", "iris", "--budget", value])
    err = capsys.readouterr().err
    assert code == 2
    assert said in err and err.startswith("--budget: ")
    assert list(tmp_path.iterdir()) == []  # no database, no job, no sandbox


# -- what the surfaces say -----------------------------------------------------------------


def test_task_json_carries_the_budget() -> None:
    spec = TaskSpec(
        name="m",
        goal="g",
        task=TaskType.REGRESSION,
        target="y",
        data_file="data.csv",
        columns=[ColumnInfo(name="y", dtype="float64", kind="number", missing=0, unique=3)],
        n_rows=3,
        sample_rows=[],
        time_budget_seconds=42.0,
    )
    assert spec.to_json_dict()["time_budget_seconds"] == 42.0


def _job(**fields: Any) -> TrainingJob:
    return TrainingJob(model_id="m", dataset_source="iris", status="training", **fields)


def test_the_snapshot_shows_the_chosen_budget_then_the_granted_one() -> None:
    job = _job(time_budget_seconds=600)
    now = utcnow()
    assert build_snapshot(job, model_name="m", events=[], now=now).budget_seconds == 600
    granted = JobEvent(
        job_id=job.id,
        kind="progress",
        stage="train",
        message="training budget: 2 min (time limit 3 min)",
        data={"time_budget_seconds": 120.0},
        at=now - timedelta(seconds=5),
    )
    snap = build_snapshot(job, model_name="m", events=[granted], now=now)
    assert snap.budget_seconds == 120
    assert build_snapshot(_job(), model_name="m", events=[], now=now).budget_seconds is None


def test_the_status_api_gives_the_chosen_budget_or_null_for_the_default() -> None:
    assert job_status(_job(time_budget_seconds=90), "m")["time_budget_seconds"] == 90
    assert job_status(_job(), "m")["time_budget_seconds"] is None


def test_the_card_and_status_say_the_training_budget() -> None:
    snap = make_snapshot(budget_seconds=60)
    card = blocks.job_card(snap)
    assert any(
        e.get("text") == "Training budget: 1 min"
        for block in card.blocks
        for e in block.get("elements", [])
    )
    status = blocks.status_message(snap)
    assert "*Training budget:* 1 min" in status.blocks[1]["text"]["text"]
    unknown = make_snapshot()
    assert "Training budget" not in str(blocks.job_card(unknown).blocks)
    assert "Training budget" not in str(blocks.status_message(unknown).blocks)
