"""The fleet benchmark (bench/fleet.py) at its smallest, so it cannot break unnoticed.

Only that it runs, drives every job live and measures every row: its targets are for
`python -m bench` at full size, never a timed test's.
"""

from __future__ import annotations

import math
from pathlib import Path

from bench.__main__ import table
from bench.fleet import fleet

JOBS = 10


def test_the_fleet_benchmark_runs_at_its_smallest(tmp_path: Path) -> None:
    rows = fleet(
        tmp_path / "fleet",
        jobs=JOBS,
        channels=2,
        train_seconds=2,
        ack_samples=10,
        drain_timeout=30,
    )
    by_name = {row.name: row for row in rows}
    assert list(by_name) == [
        f"fleet: jobs live (of {JOBS})",
        "fleet: peak RSS (MB)",
        "fleet: live -> button p95",
        "fleet: Slack calls per job",
        "fleet: 429s left unretried",
        "fleet: card edits < 1 s apart",
        "acks p99 at 50 at once",
        "acks p99 at 50 vs minimal",
    ]
    live = by_name[f"fleet: jobs live (of {JOBS})"]
    assert live.measured == JOBS and live.passed, live.note
    assert by_name["fleet: peak RSS (MB)"].measured > by_name["fleet: peak RSS (MB)"].reference
    assert by_name["fleet: Slack calls per job"].measured >= 1  # at least each job's card
    for name in ("acks p99 at 50 at once", "acks p99 at 50 vs minimal"):
        row = by_name[name]
        assert 0 < row.measured < math.inf and 0 < row.reference < math.inf, row
    shown = table(rows)
    assert all(name in shown for name in by_name)
