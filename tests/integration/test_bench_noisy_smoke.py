"""The noisy-output benchmark in small form: 3,000 lines, still past the stored head and
tail, so the bound on job_events rows is exercised (the timing target is the benchmark's)."""

from __future__ import annotations

import math
from pathlib import Path

from bench.noisy import noisy_output


def test_the_noisy_benchmark_runs_and_its_rows_are_bounded(tmp_path: Path) -> None:
    timing, rows = noisy_output(tmp_path / "noisy", lines=3000, runs=1, warm_up=False)
    assert timing.measured > 0 and timing.reference > 0 and math.isfinite(timing.ratio)
    # The bound holds and train.log held every line (extra_ok), whatever the machine's speed.
    assert rows.passed, rows
    # ...and the head and tail are there: the quiet job prints far fewer than 200 lines.
    assert rows.reference - 200 < rows.measured <= rows.reference, rows
