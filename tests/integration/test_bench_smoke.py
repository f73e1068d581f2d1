"""Every benchmark case in tiny form, so `make bench` cannot break unnoticed.

Only that each case runs and measures something: the targets are the benchmark's business
(`python -m bench`), never a timed test's.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench.__main__ import main, table
from bench.cases import Row, ack_latency, job_start_latency, pipeline_overhead
from bench.quality import quality
from bench.quality_data import SMOKE_SET
from bench.workers import queue_latency, worker_throughput
from pipeline.budget import MIN_BUDGET


def _measured(row: Row) -> None:
    assert row.measured > 0 and row.reference > 0, row
    assert math.isfinite(row.ratio), row
    assert row.name in table([row])


def test_the_worker_benchmarks_run(tmp_path: Path) -> None:
    _measured(queue_latency(tmp_path / "queue", samples=2))
    _measured(worker_throughput(tmp_path / "throughput", jobs=2))


def test_the_in_process_benchmarks_run(tmp_path: Path) -> None:
    _measured(pipeline_overhead(tmp_path / "overhead", runs=1))
    _measured(ack_latency(tmp_path / "acks", acks_per_phase=3))
    _measured(job_start_latency(tmp_path / "start", samples=2))


def test_the_quality_benchmark_runs(tmp_path: Path) -> None:
    """A real TrainBot job scored through its live app's /predict, and a real FLAML fit."""
    report = quality(tmp_path / "quality", sets=[SMOKE_SET], budget=MIN_BUDGET)
    [result] = report.results
    assert not result.error, result.error
    assert result.rows_test > 0 and result.numeric + result.text > 0, result
    assert result.trainbot_score is not None and 0 < result.trainbot_score <= 1, result
    assert result.flaml_score is not None and 0 < result.flaml_score <= 1, result
    assert result.trainbot_seconds and result.trainbot_seconds > 0, result
    assert result.flaml_seconds and result.flaml_seconds > 0, result
    assert result.model and result.model != "?", result
    assert result.ratio is not None and math.isfinite(result.ratio)
    shown = report.table()
    assert SMOKE_SET in shown and "verdict:" in shown and "machine:" in shown


def test_the_quality_benchmark_refuses_unknown_sets_before_running(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["quality", "--sets", "penguins,no_such_set"]) == 2
    assert "unknown data set no_such_set" in capsys.readouterr().err
