"""Benchmarks, each a ratio against a reference measured in the same run.

1. Pipeline overhead: a whole iris job (submit -> verified live app) against the work it
   wraps, run by hand: train.py and app.py in a temp directory until /health answers.
   Target: at most 2.0x.
2. Slack acks under load: the median time to ack `/train help` while a job trains in the
   same process, against the same with the bot idle. Target: at most 3.0x, and every ack
   well under Slack's 3 s.
3. Job start latency: submit -> first stage started, against one database round trip
   (create + read a job). Target: under 0.5 s absolute, reported as a ratio too.
4. Queue -> first stage with the worker in a separate process on PostgreSQL, woken by
   NOTIFY: the median, against a bare NOTIFY's round trip. Target: median under 100 ms
   (absolute; the ratio is shown for reference).
5. Two worker processes against one, on jobs whose stand-in sandbox waits as a remote one
   (E2B) does: the time for the same jobs to go live. Target: two give at least 1.8x the
   throughput of one (a time ratio of at most 0.556).

4 and 5 need PostgreSQL: TRAINBOT_TEST_POSTGRES_URL, or a postgresql DATABASE_URL.

`python -m bench` prints a table and exits non-zero when a target is missed.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from bench.cases import Row, ack_latency, job_start_latency, pipeline_overhead
from bench.workers import NeedsPostgres, queue_latency, require_postgres, worker_throughput


def main() -> int:
    try:
        require_postgres()  # before minutes of the other cases, not after
    except NeedsPostgres as error:
        print(f"Cannot run the benchmarks: {error}.", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows.append(pipeline_overhead(root / "overhead"))
        rows.append(ack_latency(root / "acks"))
        rows.append(job_start_latency(root / "start"))
        rows.append(queue_latency(root / "queue"))
        rows.append(worker_throughput(root / "throughput"))
    print(table(rows))
    return 0 if all(row.passed for row in rows) else 1


def table(rows: list[Row]) -> str:
    lines = [f"{'benchmark':<30} {'measured':>10} {'reference':>10} {'ratio':>7} {'target':>9}"]
    for row in rows:
        target = (
            f"<= {row.absolute * 1000:.0f}ms" if row.absolute is not None else f"<= {row.target}x"
        )
        lines.append(
            f"{row.name:<30} {row.measured:>9.3f}s {row.reference:>9.3f}s "
            f"{row.ratio:>6.2f}x {target:>9} {'ok' if row.passed else 'MISSED'}"
        )
        if row.note:
            lines.append(f"    {row.note}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
