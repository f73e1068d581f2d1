"""Every benchmark case in tiny form, so `make bench` cannot break unnoticed.

Only that each case runs and measures something: the targets are the benchmark's business
(`python -m bench`), never a timed test's.
"""

from __future__ import annotations

import math
from pathlib import Path

from bench.__main__ import table
from bench.cases import Row, ack_latency, job_start_latency, pipeline_overhead
from bench.workers import queue_latency, worker_throughput


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
