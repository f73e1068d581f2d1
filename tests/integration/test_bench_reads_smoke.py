"""The reads-at-size benchmark in small form (a few hundred jobs, a few samples), on both
databases, so `python -m bench reads` cannot break unnoticed. Only that it runs and measures
each read: the 100 ms target is the benchmark's business, never a timed test's."""

from __future__ import annotations

import math
from pathlib import Path

from bench.reads import reads_at_size


def test_the_reads_benchmark_runs_on_both_databases(tmp_path: Path) -> None:
    rows = reads_at_size(tmp_path / "reads", jobs=200, samples=3)
    names = [row.name for row in rows]
    reads = ["/train list", "/train status", "App Home", "status API"]
    assert names == [f"{read} ({kind})" for kind in ("sqlite", "pg") for read in reads]
    for row in rows:
        assert row.measured > 0 and row.reference > 0, row
        assert math.isfinite(row.ratio) and row.absolute == 0.100, row
        assert "200 jobs" in row.note, row
