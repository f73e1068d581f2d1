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

6. Reads at size (bench/reads.py): `/train list`, `/train status`, App Home and the status API
   with 10,000 finished jobs, on SQLite and on PostgreSQL. Target: p99 under 100 ms each
   (absolute; the reference is a bare `SELECT 1` on the same engine).

7. Model quality (bench/quality.py): TrainBot's live app against FLAML AutoML given the same
   train rows, metric and wall time, on eleven open data sets. Target: at least 0.97 of
   FLAML's score on every set, and a median ratio of at least 1.0.

4, 5 and 6 need PostgreSQL: TRAINBOT_TEST_POSTGRES_URL, or a postgresql DATABASE_URL.

`python -m bench [all|overhead|acks|start|queue|throughput|reads|quality]` (all by default)
prints a table and exits non-zero when a target is missed; `--budget` and `--sets` tune
quality.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.cases import Row, ack_latency, job_start_latency, pipeline_overhead
from bench.quality import DEFAULT_BUDGET, quality, quality_ready
from bench.quality_data import SETS, BenchDataError
from bench.reads import reads_at_size
from bench.workers import NeedsPostgres, queue_latency, require_postgres, worker_throughput
from pipeline.budget import MAX_BUDGET, MIN_BUDGET

# The cases that give rows of the table, in the order `all` runs them; quality runs last.
ROW_CASES: dict[str, Callable[[Path], Row | list[Row]]] = {
    "overhead": pipeline_overhead,
    "acks": ack_latency,
    "start": job_start_latency,
    "queue": queue_latency,
    "throughput": worker_throughput,
    "reads": reads_at_size,
}
QUALITY = "quality"
NEEDS_POSTGRES = {"queue", "throughput", "reads"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Benchmarks, each against a reference in the same run."
    )
    parser.add_argument(
        "case",
        nargs="?",
        default="all",
        choices=["all", *ROW_CASES, QUALITY],
        help="(default: all)",
    )
    parser.add_argument(
        "--budget",
        type=int,
        default=DEFAULT_BUDGET,
        metavar="SECONDS",
        help=f"quality: each TrainBot job's training budget (default {DEFAULT_BUDGET})",
    )
    parser.add_argument(
        "--sets",
        type=lambda text: [name.strip() for name in text.split(",") if name.strip()],
        metavar="NAME,...",
        help=f"quality: only these data sets ({', '.join(s.name for s in SETS)})",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not MIN_BUDGET <= args.budget <= MAX_BUDGET:
        parser.error(f"--budget must be between {MIN_BUDGET} and {MAX_BUDGET} seconds")
    chosen = [*ROW_CASES, QUALITY] if args.case == "all" else [args.case]
    # What a case needs is checked before minutes of the other cases, not after.
    try:
        if NEEDS_POSTGRES & set(chosen):
            require_postgres()
        if QUALITY in chosen:
            quality_ready(args.sets)
    except (NeedsPostgres, BenchDataError) as error:
        print(f"Cannot run the benchmarks: {error}.", file=sys.stderr)
        return 2
    passed = True
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows: list[Row] = []
        for name in chosen:
            if name in ROW_CASES:
                found = ROW_CASES[name](root / name)
                rows += found if isinstance(found, list) else [found]
        if rows:
            print(table(rows), flush=True)
            passed = all(row.passed for row in rows)
        if QUALITY in chosen:
            report = quality(root / QUALITY, sets=args.sets, budget=args.budget)
            print(report.table())
            passed = passed and report.passed
    return 0 if passed else 1


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
