"""The noisy-output benchmark at its smallest (bench/__main__.py's Case.smallest: 3,000 lines,
still past the stored head and tail, so the bound on job_events rows is exercised), run as
`python -m bench noisy --smoke` runs it. The timing target is the benchmark's."""

from __future__ import annotations

import math
from pathlib import Path

from bench.__main__ import run_case


def test_the_noisy_benchmark_runs_and_its_rows_are_bounded(tmp_path: Path) -> None:
    result = run_case("noisy", tmp_path / "noisy", smoke=True)
    assert not result.error, result.error
    timing, rows = result.rows
    assert timing.name == "noisy script: 3,000 lines", timing
    assert timing.measured > 0 and timing.reference > 0 and math.isfinite(timing.ratio)
    # The bound holds and train.log held every line (extra_ok), whatever the machine's speed.
    assert rows.passed and rows.unit == "rows", rows
    # ...and the head and tail are there: the quiet job prints far fewer than 200 lines.
    assert rows.reference - 200 < rows.measured <= rows.reference, rows
