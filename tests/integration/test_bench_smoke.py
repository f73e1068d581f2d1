"""Every benchmark case at its smallest size (bench/__main__.py's Case.smallest), run through
the same wiring as `python -m bench`, so `make bench` cannot break unnoticed.

Only that each case runs and measures something: the targets are the benchmark's business
(`python -m bench`), never a timed test's. reads, noisy and fleet have smoke tests of their
own (test_bench_<case>_smoke.py) with checks of their own.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench.__main__ import (
    ALL_QUALITY,
    CASES,
    FULL_QUALITY,
    QUALITY,
    ROW_CASES,
    SUITE_SECONDS,
    Case,
    CaseResult,
    main,
    quality_plan,
    report,
    run_case,
    table,
)
from bench.cases import Row
from bench.machine import machine
from bench.quality_data import SETS, SMOKE_SET
from pipeline.budget import MIN_BUDGET

OWN_SMOKE_TESTS = {"reads", "noisy", "fleet"}


def _measured(row: Row) -> None:
    assert row.measured > 0 and row.reference > 0, row
    assert math.isfinite(row.ratio), row
    assert row.name in table([row])


def test_every_case_has_a_smoke_test() -> None:
    here = Path(__file__).parent
    for name in OWN_SMOKE_TESTS:
        assert name in ROW_CASES and (here / f"test_bench_{name}_smoke.py").exists(), name
    assert set(CASES) == {*ROW_CASES, QUALITY}


@pytest.mark.parametrize("name", [name for name in ROW_CASES if name not in OWN_SMOKE_TESTS])
def test_each_case_runs_at_its_smallest(name: str, tmp_path: Path) -> None:
    result = run_case(name, tmp_path / name, smoke=True)
    assert not result.error, result.error
    assert result.rows and result.seconds > 0
    for row in result.rows:
        _measured(row)
    assert "smallest size" in report("machine: test", [result], result.seconds, suite=False)


def test_the_quality_benchmark_runs(tmp_path: Path) -> None:
    """A real TrainBot job scored through its live app's /predict, and a real FLAML fit."""
    result = run_case(QUALITY, tmp_path / "quality", smoke=True)
    assert not result.error, result.error
    report_ = result.quality
    assert report_ is not None and report_.budget == MIN_BUDGET
    [found] = report_.results
    assert found.spec.name == SMOKE_SET
    assert not found.error, found.error
    assert found.rows_test > 0 and found.numeric + found.text > 0, found
    assert found.trainbot_score is not None and 0 < found.trainbot_score <= 1, found
    assert found.flaml_score is not None and 0 < found.flaml_score <= 1, found
    assert found.trainbot_seconds and found.trainbot_seconds > 0, found
    assert found.flaml_seconds and found.flaml_seconds > 0, found
    assert found.model and found.model != "?", found
    assert found.ratio is not None and math.isfinite(found.ratio)
    shown = report_.table()
    assert SMOKE_SET in shown and "verdict:" in shown and "machine:" in shown
    # The case line says what ran: one set at the least budget, not the full benchmark.
    assert f"1 of {len(SETS)} sets ({SMOKE_SET})" in report("m", [result], 1.0, suite=False)


def test_help_lists_every_case(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    shown = capsys.readouterr().out
    assert all(name in shown for name in ["all", *CASES])


def test_all_runs_quality_smaller_and_says_so() -> None:
    plan = quality_plan("all", budget=None, sets=None, smoke=False)
    assert plan == ALL_QUALITY and plan.budget < FULL_QUALITY.budget
    assert f"{plan.budget} s" in plan.describe() and "python -m bench quality" in plan.describe()
    assert quality_plan(QUALITY, budget=None, sets=None, smoke=False) == FULL_QUALITY
    assert FULL_QUALITY.describe() == f"all {len(SETS)} sets, a 30 s training budget a job"
    # --budget and --sets win under all too.
    given = quality_plan("all", budget=20, sets=["ames"], smoke=False)
    assert (given.budget, given.sets) == (20, ["ames"])


def test_the_report_shows_the_machine_each_case_and_the_suite_time() -> None:
    facts = machine()
    for fact in ("cores", "GiB memory", "Python", "PostgreSQL", "UTC"):
        assert fact in facts, facts
    ok = Row("a", 1.0, 1.0, 2.0)
    rss = Row("b", 300.0, 100.0, 5.0, absolute=500.0, unit="MB")
    shown = report(facts, [CaseResult("x", 12.0, [ok, rss])], SUITE_SECONDS + 1, suite=True)
    assert shown.splitlines()[0] == facts
    assert "[x: 12 s]" in shown and "<= 500 MB" in shown
    assert f"within {SUITE_SECONDS} s: MISSED" in shown


def test_a_failing_case_is_reported_not_raised(tmp_path: Path) -> None:
    def broken(root: Path) -> Row:
        raise RuntimeError("boom")

    failed = run_case("broken", tmp_path, cases={"broken": Case(broken)})
    assert failed.error == "RuntimeError: boom" and not failed.passed
    assert "[broken: 0.0 s; ERROR RuntimeError: boom]" in report("m", [failed], 1.0, suite=False)


def test_the_quality_benchmark_refuses_unknown_sets_before_running(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["quality", "--sets", "penguins,no_such_set"]) == 2
    assert "unknown data set no_such_set" in capsys.readouterr().err
