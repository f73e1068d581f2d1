"""The quality benchmark's reference: FLAML AutoML on the same rows, metric and wall time.

FLAML is a benchmark-only dependency (the `bench` extra). It gets the train CSV as pandas
reads it, the metric TrainBot is judged by (balanced accuracy through a custom metric, or
R^2), the wall time TrainBot's training stage took, one core (n_jobs=1 and one BLAS thread,
as TrainBot's scripts run), and a fixed seed.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from typing import Any

import pandas as pd

from bench.quality_data import INSTALL_HINT, SEED, BenchDataError

MIN_SECONDS = 1.0


@dataclass(frozen=True)
class FlamlRun:
    predictions: list[Any]
    seconds: float  # the fit's wall time (FLAML may overrun its budget a little)
    model: str  # the estimator FLAML chose


def balanced_accuracy_metric(
    X_val: Any, y_val: Any, estimator: Any, *_: Any, **__: Any
) -> tuple[float, dict[str, float]]:
    """FLAML's custom-metric signature: (X_val, y_val, estimator, labels, X_train, ...)
    -> (loss to minimise, metrics to log)."""
    from sklearn.metrics import balanced_accuracy_score

    score = balanced_accuracy_score(y_val, estimator.predict(X_val))
    return 1.0 - score, {"balanced_accuracy": score}


def fit_flaml(
    *, train: pd.DataFrame, test: pd.DataFrame, target: str, task: str, seconds: float
) -> FlamlRun:
    try:
        from flaml import AutoML
    except ImportError as error:
        raise BenchDataError(f"the reference needs FLAML: {INSTALL_HINT}") from error
    from threadpoolctl import threadpool_limits

    X, y = train.drop(columns=[target]), train[target]
    metric: Any = balanced_accuracy_metric if task == "classification" else "r2"
    automl = AutoML()
    logging.getLogger("flaml.automl.logger").setLevel(logging.ERROR)
    started = time.monotonic()
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        automl.fit(
            X,
            y,
            task=task,
            metric=metric,
            time_budget=max(MIN_SECONDS, seconds),
            n_jobs=1,
            seed=SEED % 2**31,
            verbose=0,
        )
        seconds_taken = time.monotonic() - started
        predictions = list(automl.predict(test.drop(columns=[target])))
    return FlamlRun(predictions, seconds_taken, str(automl.best_estimator))
