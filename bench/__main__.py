"""Benchmarks, each a ratio or a figure against a reference measured in the same run.

1. overhead: a whole iris job (submit -> verified live app) against the work it wraps, run
   by hand: train.py and app.py in a temp directory until /health answers. Target: <= 2.0x.
2. acks: the median time to ack `/train help` while a job trains in the same process,
   against the same with the bot idle. Target: <= 3.0x, and every ack well under Slack's 3 s.
3. start: submit -> first stage started, against one database round trip (create + read a
   job). Target: under 0.5 s absolute, reported as a ratio too.
4. queue: queue -> first stage with the worker in a separate process on PostgreSQL, woken
   by NOTIFY: the median, against a bare NOTIFY's round trip. Target: median under 100 ms.
5. throughput: two worker processes against one, on jobs whose stand-in sandbox waits as a
   remote one (E2B) does. Target: two give at least 1.8x the throughput of one.
6. reads (bench/reads.py): `/train list`, `/train status`, App Home and the status API with
   10,000 finished jobs, on SQLite and on PostgreSQL. Target: p99 under 100 ms each.
7. noisy (bench/noisy.py): a job whose train.py prints 100,000 lines against the same job
   printing nothing. Target: <= 1.2x the wall time, and a bounded number of job_events rows.
8. fleet (bench/fleet.py): one worker, 200 remote-style jobs across 10 channels against the
   rate-limited fake Slack (all live, RSS, live -> button p95, Slack calls per job, 429s,
   card edits), and the ack p99 at 50 at once beside them against a minimal Bolt app.
9. quality (bench/quality.py): TrainBot's live app against FLAML AutoML given the same
   train rows, metric and wall time, on eleven open data sets. Target: at least 0.97 of
   FLAML's score on every set, and a median ratio of at least 1.0.

queue, throughput, reads and fleet need PostgreSQL: TRAINBOT_TEST_POSTGRES_URL, or a
postgresql DATABASE_URL.

`python -m bench [all|overhead|acks|start|queue|throughput|reads|noisy|fleet|quality]` (all by
default) prints the machine it ran on, then the table with each case's wall time, and exits
non-zero when a target is missed. `all` must finish within 15 minutes on the 2-core machine
(SUITE_SECONDS; the last line says whether it did), so it runs quality on fewer sets with the
least budget (ALL_QUALITY) and says so in the table; `python -m bench quality` runs all eleven
at 30 s (about 11 minutes alone). `--budget` and `--sets` choose quality's run, under `all`
too. `--smoke` runs each case at its smallest size (Case.smallest, what the smoke tests in
tests/integration/test_bench*_smoke.py run): it checks the wiring, its figures mean nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.cases import Row, ack_latency, job_start_latency, pipeline_overhead
from bench.machine import machine
from bench.noisy import noisy_output
from bench.quality import DEFAULT_BUDGET, QualityReport, quality, quality_ready
from bench.quality_data import SETS, SMOKE_SET, BenchDataError
from bench.reads import reads_at_size
from bench.workers import NeedsPostgres, queue_latency, require_postgres, worker_throughput
from pipeline.budget import MAX_BUDGET, MIN_BUDGET

SUITE_SECONDS = 15 * 60  # the bound on `python -m bench all`, on the 2-core machine


def _fleet(root: Path, **sizes: Any) -> list[Row]:
    """bench/fleet.py's rows."""
    from bench.fleet import fleet  # when it runs: the fleet's Slack stack is heavy to import

    return fleet(root, **sizes)


@dataclass(frozen=True)
class Case:
    run: Callable[..., Row | list[Row]]
    smallest: dict[str, Any] = field(default_factory=dict)  # keyword arguments: a smoke run
    postgres: bool = False


# The cases that give rows of the table, in the order `all` runs them; quality runs last.
ROW_CASES: dict[str, Case] = {
    "overhead": Case(pipeline_overhead, {"runs": 1}),
    "acks": Case(ack_latency, {"acks_per_phase": 3}),
    "start": Case(job_start_latency, {"samples": 2}),
    "queue": Case(queue_latency, {"samples": 2}, postgres=True),
    "throughput": Case(worker_throughput, {"jobs": 2}, postgres=True),
    "reads": Case(reads_at_size, {"jobs": 200, "samples": 3}, postgres=True),
    "noisy": Case(noisy_output, {"lines": 3000, "runs": 1, "warm_up": False}),
    "fleet": Case(
        _fleet,
        {"jobs": 10, "channels": 2, "train_seconds": 2, "ack_samples": 10, "drain_timeout": 30},
        postgres=True,
    ),
}
QUALITY = "quality"
CASES = [*ROW_CASES, QUALITY]


@dataclass(frozen=True)
class QualityPlan:
    budget: int
    sets: list[str] | None = None  # None: every set

    def describe(self) -> str:
        names = self.sets or [spec.name for spec in SETS]
        which = (
            f"all {len(SETS)} sets"
            if len(names) == len(SETS)
            else f"{len(names)} of {len(SETS)} sets ({', '.join(names)})"
        )
        about = f"{which}, a {self.budget} s training budget a job"
        if self != FULL_QUALITY:
            about += (
                f"; the full benchmark (`python -m bench quality`) runs all {len(SETS)} "
                f"at {FULL_QUALITY.budget} s"
            )
        return about


FULL_QUALITY = QualityPlan(DEFAULT_BUDGET)
# What fits beside the other cases in SUITE_SECONDS (about 25 s a set at the least budget
# TrainBot accepts, against about 60 s at the full one): six sets covering the full run's
# kinds, balanced and imbalanced classes (two to four of them) and regression.
ALL_QUALITY = QualityPlan(MIN_BUDGET, ["penguins", "credit", "lending", "hpc", "wage", "ames"])
SMOKE_QUALITY = QualityPlan(MIN_BUDGET, [SMOKE_SET])


@dataclass
class CaseResult:
    name: str
    seconds: float
    rows: list[Row] = field(default_factory=list)
    about: str = ""  # what ran, when that is not the case's full benchmark
    quality: QualityReport | None = None
    error: str = ""

    @property
    def passed(self) -> bool:
        rows_ok = all(row.passed for row in self.rows)
        return not self.error and rows_ok and (self.quality is None or self.quality.passed)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=(
            "Benchmarks, each against a reference in the same run; `all` runs every case, "
            f"quality on {ALL_QUALITY.describe()}."
        ),
    )
    parser.add_argument(
        "case", nargs="?", default="all", choices=["all", *CASES], help="(default: all)"
    )
    parser.add_argument(
        "--budget",
        type=int,
        metavar="SECONDS",
        help=(
            f"quality: each TrainBot job's training budget (default {FULL_QUALITY.budget}; "
            f"{ALL_QUALITY.budget} under all)"
        ),
    )
    parser.add_argument(
        "--sets",
        type=lambda text: [name.strip() for name in text.split(",") if name.strip()],
        metavar="NAME,...",
        help=(
            f"quality: only these data sets ({', '.join(s.name for s in SETS)}; under all: "
            f"{', '.join(ALL_QUALITY.sets or [])})"
        ),
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="run each case at its smallest size: checks the wiring, measures nothing useful",
    )
    return parser


def quality_plan(
    case: str, *, budget: int | None, sets: list[str] | None, smoke: bool
) -> QualityPlan:
    """What quality runs: --budget and --sets as given, the rest by case (or --smoke)."""
    base = SMOKE_QUALITY if smoke else ALL_QUALITY if case == "all" else FULL_QUALITY
    return QualityPlan(
        budget if budget is not None else base.budget, sets if sets is not None else base.sets
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.budget is not None and not MIN_BUDGET <= args.budget <= MAX_BUDGET:
        parser.error(f"--budget must be between {MIN_BUDGET} and {MAX_BUDGET} seconds")
    chosen = CASES if args.case == "all" else [args.case]
    plan = quality_plan(args.case, budget=args.budget, sets=args.sets, smoke=args.smoke)
    # What a case needs is checked before minutes of the other cases, not after.
    try:
        if any(ROW_CASES[name].postgres for name in chosen if name in ROW_CASES):
            require_postgres()
        if QUALITY in chosen:
            quality_ready(plan.sets)
    except (NeedsPostgres, BenchDataError) as error:
        print(f"Cannot run the benchmarks: {error}.", file=sys.stderr)
        return 2
    facts = machine()  # the load before the cases add theirs
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        results = []
        for name in chosen:
            result = run_case(name, Path(tmp) / name, smoke=args.smoke, plan=plan)
            print(f"bench: {name} took {_seconds(result.seconds)}", flush=True)
            results.append(result)
    total = time.monotonic() - started
    in_time = args.case != "all" or args.smoke or total <= SUITE_SECONDS
    print(report(facts, results, total, suite=args.case == "all" and not args.smoke))
    return 0 if in_time and all(result.passed for result in results) else 1


def run_case(
    name: str,
    root: Path,
    *,
    smoke: bool = False,
    plan: QualityPlan | None = None,
    cases: Mapping[str, Case] = ROW_CASES,
) -> CaseResult:
    """One case, timed; an error becomes the case's result so the other cases still run."""
    started = time.monotonic()
    result = CaseResult(name, 0.0)
    try:
        if name == QUALITY:
            plan = plan or (SMOKE_QUALITY if smoke else FULL_QUALITY)
            result.about = plan.describe()
            result.quality = quality(root, sets=plan.sets, budget=plan.budget)
        else:
            case = cases[name]
            if smoke:
                sizes = ", ".join(f"{key}={value}" for key, value in case.smallest.items())
                result.about = f"smallest size ({sizes})"
            found = case.run(root, **(case.smallest if smoke else {}))
            result.rows = found if isinstance(found, list) else [found]
    except Exception as error:
        traceback.print_exc()
        result.error = f"{type(error).__name__}: {error}"
    result.seconds = time.monotonic() - started
    return result


# ------------------------------------------------------------------ the table

HEADER = f"{'benchmark':<30} {'measured':>10} {'reference':>10} {'ratio':>7} {'target':>9}"


def report(facts: str, results: list[CaseResult], total: float, *, suite: bool) -> str:
    """The machine, each case's rows under its wall time, quality's own table, the total."""
    lines = [facts]
    measured = [result for result in results if result.name != QUALITY]
    lines += [HEADER] if measured else []
    for result in measured:
        lines.append(_case_line(result))
        lines += _row_lines(result.rows)
    for result in results:
        if result.name == QUALITY:
            lines += ["", _case_line(result)]
            lines += [result.quality.table()] if result.quality is not None else []
    times = ", ".join(f"{result.name} {_seconds(result.seconds)}" for result in results)
    lines += ["", f"wall time: {total:.0f} s in all ({times})"]
    if suite:
        within = "ok" if total <= SUITE_SECONDS else "MISSED"
        lines[-1] += f"; target: the whole suite within {SUITE_SECONDS} s: {within}"
    return "\n".join(lines)


def _case_line(result: CaseResult) -> str:
    parts = [
        _seconds(result.seconds),
        result.about,
        f"ERROR {result.error}" if result.error else "",
    ]
    return f"[{result.name}: {'; '.join(part for part in parts if part)}]"


def _seconds(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"


def table(rows: list[Row]) -> str:
    return "\n".join([HEADER, *_row_lines(rows)])


def _row_lines(rows: list[Row]) -> list[str]:
    lines = []
    for row in rows:
        ratio = f"{row.ratio:>6.2f}x" if row.reference else f"{'-':>7}"
        lines.append(
            f"{row.name:<30} {_amount(row.measured, row.unit):>10} "
            f"{_amount(row.reference, row.unit):>10} {ratio} {_target(row):>9} "
            f"{'ok' if row.passed else 'MISSED'}"
        )
        if row.note:
            lines.append(f"    {row.note}")
    return lines


def _amount(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1000:.1f}ms" if value < 1 else f"{value:.3f}s"
    return f"{value:.0f}" + (f" {unit}" if unit else "")


def _target(row: Row) -> str:
    if row.absolute is None:
        return f"<= {row.target}x"
    if row.unit == "s":
        return f"<= {row.absolute * 1000:.0f}ms" if row.absolute < 1 else f"<= {row.absolute:g}s"
    return f"<= {row.absolute:g}" + (f" {row.unit}" if row.unit else "")


if __name__ == "__main__":
    sys.exit(main())
