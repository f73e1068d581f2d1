"""Train a scikit-learn model from task.json and data.csv (TrainBot offline template).

Writes model.joblib (a Pipeline that takes the raw feature columns), metrics.json,
schema.json and chart.png into the current directory. Column kinds in task.json are
hints only: this script looks at the data itself.
"""

from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")
# One BLAS thread: small models gain nothing from more, and a shared sandbox
# slows to a crawl when OpenBLAS threads compete for the cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import json
import operator
import re
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STARTED = time.monotonic()  # the budget counts from here, imports included

import joblib
import numpy as np
import pandas as pd
from model_search import IMPORTANCE_ROWS, Problem, SearchResult, search
from sklearn.base import clone
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.impute import SimpleImputer
from sklearn.inspection import permutation_importance
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    get_scorer,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
)
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

TASK_FILE = "task.json"
TEST_SIZE = 0.2
SEED = 42
MAX_CHOICES = 50
MIN_ROWS = 10
DATE_PARSE_SHARE = 0.9
DEFAULT_BUDGET_SECONDS = 60.0  # when task.json names none
MIN_BUDGET_SECONDS = 1.0
IMPORTANCE_REPEATS = 5
# The test score may fall this far below cross-validation (or two fold deviations, if
# more) before the job warns that the model does not hold up on unseen rows.
GAP_WARNING = 0.08
REFIT_SLACK = 1.3  # a refit on all rows takes about this many times the split's fit
ID_NAMES = {"id", "uuid", "guid", "index", "unnamed_0", "row", "row_id", "rowid"}
TRUE_WORDS = {"true", "yes", "y", "t", "1", "on"}
FALSE_WORDS = {"false", "no", "n", "f", "0", "off"}
DATE_PARTS = ("dt.year", "dt.month", "dt.day", "dt.dayofweek")


class DataError(Exception):
    """The data cannot be used for training; the message says why."""


@dataclass
class Column:
    name: str
    type: str  # "number" | "category" | "date" | "bool" | "drop"
    reason: str = ""


def say(message: str) -> None:
    print(message, flush=True)


def column_key(name: str) -> str:
    """How a column name is matched: case and surrounding or repeated spaces do not count.

    TrainBot's one rule for headers (pipeline/codegen/contract.py), copied because this
    script runs on its own; app.py matches the keys of request rows by it.
    """
    return " ".join(name.split()).casefold()


# ---------------------------------------------------------------- loading


def load_task(workdir: Path) -> dict[str, Any]:
    path = workdir / TASK_FILE
    if not path.exists():
        raise DataError(f"{TASK_FILE} not found in {workdir}")
    task = json.loads(path.read_text(encoding="utf-8"))
    if task.get("task") not in ("classification", "regression"):
        raise DataError(f'task must be "classification" or "regression", got {task.get("task")!r}')
    if not task.get("target"):
        raise DataError(f"{TASK_FILE} names no target column")
    return task


def load_data(workdir: Path, task: dict[str, Any]) -> tuple[pd.DataFrame, str]:
    path = workdir / (task.get("data_file") or "data.csv")
    if not path.exists():
        raise DataError(f"data file {path.name} not found")
    try:
        frame = pd.read_csv(path, low_memory=False)
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"could not read {path.name} as CSV: {exc}") from exc
    target = str(task["target"])
    if target not in frame.columns:
        matches = [c for c in frame.columns if column_key(str(c)) == column_key(target)]
        if len(matches) != 1:
            raise DataError(f'target column "{target}" is not in {path.name}')
        target = str(matches[0])
    return frame, target


def prepare_target(frame: pd.DataFrame, target: str, task: str) -> tuple[pd.DataFrame, pd.Series]:
    frame = frame[frame[target].notna()].reset_index(drop=True)
    y = frame[target]
    if task == "regression":
        numeric = pd.to_numeric(y, errors="coerce")
        if numeric.isna().mean() > 0.1:
            raise DataError(f'regression target "{target}" is not numeric')
        keep = numeric.notna()
        frame, y = frame[keep].reset_index(drop=True), numeric[keep].astype(float)
        y = y.reset_index(drop=True)
    else:
        y = plain_labels(y)
        if y.nunique() < 2:
            raise DataError(f'target "{target}" has a single class; nothing to learn')
    if len(frame) < MIN_ROWS:
        raise DataError(f"only {len(frame)} rows have a target value; need at least {MIN_ROWS}")
    return frame.drop(columns=[target]), y


def plain_labels(y: pd.Series) -> pd.Series:
    """Class labels exactly as read (1.0 stays 1.0: the pipeline compares them as text)."""
    if pd.api.types.is_bool_dtype(y) or pd.api.types.is_numeric_dtype(y):
        return y
    return y.astype(str).astype(object)


# ------------------------------------------------------------ column analysis


def normalized_name(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")


def looks_like_id_name(name: str) -> bool:
    norm = normalized_name(name)
    if norm in ID_NAMES or norm.endswith(("_id", "_uuid", "_guid")):
        return True
    return re.search(r"[a-z](Id|ID)$", name.strip()) is not None  # CustomerID, PassengerId


def is_bool_column(values: pd.Series) -> bool:
    if pd.api.types.is_bool_dtype(values):
        return True
    if pd.api.types.is_numeric_dtype(values):
        return False
    words = {str(v).strip().lower() for v in values.dropna().unique()}
    return bool(words) and words <= {"true", "false"}


def is_date_column(values: pd.Series) -> bool:
    sample = values.dropna().astype(str).head(500)
    if sample.empty:
        return False
    # A date has digits and a separator; plain numbers and words are not dates.
    shaped = sample.str.contains(r"\d", regex=True) & sample.str.contains(r"[-/:.\s]|[A-Za-z]{3}")
    if shaped.mean() < DATE_PARSE_SHARE or sample.str.len().min() < 6:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = pd.to_datetime(sample, errors="coerce", format="mixed", utc=True)
    return bool(parsed.notna().mean() >= DATE_PARSE_SHARE)


def mostly_numeric(values: pd.Series) -> bool:
    present = values.dropna()
    return not present.empty and pd.to_numeric(present, errors="coerce").notna().mean() >= 0.95


def classify_column(name: str, values: pd.Series) -> Column:
    present = values.dropna()
    n_present, n_unique = len(present), present.nunique()
    if n_present == 0:
        return Column(name, "drop", "empty column")
    if looks_like_id_name(name):
        return Column(name, "drop", "identifier column")
    if n_unique <= 1:
        return Column(name, "drop", "same value in every row")
    if is_bool_column(values):
        return Column(name, "bool")
    if pd.api.types.is_numeric_dtype(values):
        if n_unique == n_present >= MIN_ROWS and is_integral(present) and is_sequence(present):
            return Column(name, "drop", "identifier (unique integer per row)")
        return Column(name, "number")
    if mostly_numeric(values):
        return Column(name, "number")
    if is_date_column(values):
        return Column(name, "date")
    text = present.astype(str)
    if n_unique == n_present >= MIN_ROWS and not text.str.contains(r"\s").any():
        return Column(name, "drop", "identifier (unique value per row)")
    if n_unique <= MAX_CHOICES or n_unique <= 0.2 * n_present:
        return Column(name, "category")
    if text.str.contains(r"\s").mean() > 0.5:
        return Column(name, "drop", f"free text ({n_unique} distinct values)")
    return Column(name, "drop", f"too many distinct values ({n_unique}) to use as a category")


def is_integral(values: pd.Series) -> bool:
    numbers = values.astype(float)
    return bool(np.all(np.equal(np.mod(numbers, 1), 0)))


def is_sequence(values: pd.Series) -> bool:
    """Row counters and ids: ordered, or packed into a range about as wide as the row count."""
    span = float(values.max()) - float(values.min()) + 1
    ordered = values.is_monotonic_increasing or values.is_monotonic_decreasing
    return bool(ordered or span <= 2 * len(values))


def analyse_columns(features: pd.DataFrame) -> list[Column]:
    return [classify_column(str(name), features[name]) for name in features.columns]


def to_bool_number(value: Any) -> float:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return np.nan
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return 1.0
    if word in FALSE_WORDS:
        return 0.0
    return np.nan


def coerce_features(features: pd.DataFrame, columns: list[Column]) -> pd.DataFrame:
    """The raw frame in the dtypes the model expects; app.py converts requests the same way."""
    out = pd.DataFrame(index=features.index)
    for col in columns:
        values = features[col.name]
        if col.type == "number":
            out[col.name] = pd.to_numeric(values, errors="coerce").astype(float)
        elif col.type == "bool":
            out[col.name] = values.map(to_bool_number).astype(float)
        elif col.type in ("category", "date"):
            text = (
                values.astype(object)
                .where(values.notna(), None)
                .map(lambda v: np.nan if v is None else str(v))
            )
            out[col.name] = text.astype(object)
    return out


# ------------------------------------------------------------------ model


def date_parts() -> Pipeline:
    """Raw date strings -> year, month, day, day of week.

    Built only from library callables so model.joblib unpickles anywhere, with no
    helper code from this script.
    """
    return Pipeline(
        [
            (
                "parse",
                FunctionTransformer(
                    pd.to_datetime, kw_args={"errors": "coerce", "format": "mixed", "utc": True}
                ),
            ),
            ("parts", FunctionTransformer(operator.attrgetter(*DATE_PARTS))),
            ("stack", FunctionTransformer(np.column_stack)),
            ("impute", SimpleImputer(strategy="median")),
            ("scale", StandardScaler()),
        ]
    )


def search_problem(X: pd.DataFrame, y: pd.Series, task: str, columns: list[Column]) -> Problem:
    return Problem(
        X=X,
        y=y,
        task=task,
        numbers=[c.name for c in columns if c.type in ("number", "bool")],
        categories=[c.name for c in columns if c.type == "category"],
        dates=[c.name for c in columns if c.type == "date"],
        date_prep=date_parts,
        date_width=len(DATE_PARTS),
    )


def split(X: pd.DataFrame, y: pd.Series, task: str) -> tuple[Any, Any, Any, Any]:
    stratify = None
    if task == "classification":
        counts = y.value_counts()
        n_test = int(np.ceil(TEST_SIZE * len(y)))
        if counts.min() >= 2 and n_test >= len(counts):
            stratify = y
    return train_test_split(X, y, test_size=TEST_SIZE, random_state=SEED, stratify=stratify)


# ---------------------------------------------------------------- outputs


IMBALANCE_RATIO = 2.0  # largest class over smallest; past this, accuracy misleads


def is_imbalanced(y: Any) -> bool:
    counts = pd.Series(y).value_counts()
    return len(counts) > 1 and counts.iloc[0] / counts.iloc[-1] > IMBALANCE_RATIO


def evaluate(
    name: str, model: Pipeline, X_train: Any, X_test: Any, y_train: Any, y_test: Any, task: str
) -> tuple[dict[str, Any], np.ndarray]:
    predicted = model.predict(X_test)
    if task == "classification":
        dummy: Any = DummyClassifier(strategy="most_frequent").fit(X_train, y_train)
        guessed = dummy.predict(X_test)
        extra = {
            "accuracy": accuracy_score(y_test, predicted),
            "f1_macro": f1_score(y_test, predicted, average="macro"),
            "balanced_accuracy": balanced_accuracy_score(y_test, predicted),
        }
        # On imbalanced classes plain accuracy rewards always guessing the majority, so the
        # headline metric becomes balanced accuracy (the mean recall of the classes).
        if is_imbalanced(y_train):
            metric = "balanced_accuracy"
            score = extra["balanced_accuracy"]
            baseline = balanced_accuracy_score(y_test, guessed)
        else:
            metric = "accuracy"
            score = extra["accuracy"]
            baseline = accuracy_score(y_test, guessed)
        baseline_name = "always the most frequent class"
    else:
        dummy = DummyRegressor(strategy="mean").fit(X_train, y_train)
        score = r2_score(y_test, predicted)
        baseline = r2_score(y_test, dummy.predict(X_test))
        extra = {
            "mae": mean_absolute_error(y_test, predicted),
            "rmse": float(np.sqrt(mean_squared_error(y_test, predicted))),
        }
        metric, baseline_name = "r2", "mean of the target"
    metrics = {
        "task": task,
        "metric": metric,
        "score": round(float(score), 4),
        "baseline": round(float(baseline), 4),
        "baseline_name": baseline_name,
        "model": name,
        "n_train": int(len(y_train)),
        "n_test": int(len(y_test)),
        "extra": {k: round(float(v), 4) for k, v in extra.items()},
    }
    return metrics, predicted


def search_report(result: SearchResult, budget: float) -> dict[str, Any]:
    """What the search tried, for metrics.json: the leaderboard best first, and the budget."""
    report: dict[str, Any] = {
        "cv_metric": result.cv_metric,
        "cv_score": round(result.chosen.mean, 4),
        "leaderboard": [trial.entry() for trial in result.leaderboard[:20]],
        "budget_seconds": round(budget, 1),
    }
    if result.chosen.threshold is not None:
        report["threshold"] = result.chosen.threshold
    return report


def score_warnings(metrics: dict[str, Any], result: SearchResult) -> list[str]:
    """Plain-words warnings when the test split disagrees with cross-validation (a score no
    better than the baseline the pipeline warns of itself)."""
    metric = result.cv_metric
    test = metrics["score"] if metrics["metric"] == metric else metrics["extra"].get(metric)
    cv, spread = result.chosen.mean, result.chosen.std
    if test is None or cv - test <= max(GAP_WARNING, 2 * spread):
        return []
    return [
        f"The test {metric} {test:.3f} is far below cross-validation's {cv:.3f}: the model "
        "may not hold up on new rows (rare or out-of-range values in the test split, or "
        "rows that depend on each other). Check the data before relying on it."
    ]


def feature_importances(
    model: Any, X_test: pd.DataFrame, y_test: pd.Series, metric: str, deadline: float
) -> list[dict[str, Any]]:
    """Permutation importance on (a sample of) the test split: the score lost per feature.

    As many repeats as the budget allows (one at least): each costs one prediction per feature.
    """
    if len(X_test) > IMPORTANCE_ROWS:
        rows = X_test.sample(IMPORTANCE_ROWS, random_state=SEED).index
        X_test, y_test = X_test.loc[rows], y_test.loc[rows]
    timer = time.monotonic()
    model.predict(X_test)
    one_pass = (time.monotonic() - timer) * X_test.shape[1]
    repeats = int(
        max(1, min(IMPORTANCE_REPEATS, (deadline - time.monotonic()) // max(one_pass, 1e-3)))
    )
    found = permutation_importance(
        model,
        X_test,
        y_test,
        scoring=get_scorer(metric),
        n_repeats=repeats,
        random_state=SEED,
        n_jobs=1,
    )
    ranked = sorted(
        zip(X_test.columns, found.importances_mean, found.importances_std, strict=True),
        key=lambda item: -item[1],
    )
    return [
        {"name": str(name), "importance": round(float(mean), 4), "std": round(float(std), 4)}
        for name, mean, std in ranked
    ]


def plain(value: Any) -> Any:
    """A numpy or pandas scalar as the matching JSON value."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return plain(value.item())
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def example_row(features: pd.DataFrame) -> pd.Series:
    """The first row with the fewest missing values, so the app's form starts coherent."""
    return features.loc[features.isna().sum(axis=1).idxmin()]


def feature_schema(col: Column, values: pd.Series, example: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": col.name, "type": col.type}
    present = values.dropna()
    if col.type == "number":
        entry["min"], entry["max"] = plain(present.min()), plain(present.max())
        entry["example"] = plain(example if pd.notna(example) else present.median())
    elif col.type == "bool":
        entry["example"] = bool((example if pd.notna(example) else present.mode()[0]) == 1.0)
    elif col.type == "category":
        counts = present.value_counts()
        choices = sorted(counts.index[:MAX_CHOICES].tolist())
        entry["choices"] = choices
        entry["example"] = example if pd.notna(example) else counts.index[0]
    else:  # date
        entry["example"] = example if pd.notna(example) else str(present.iloc[0])
    return entry


def build_schema(
    target: str,
    task: str,
    columns: list[Column],
    X: pd.DataFrame,
    classes: list[Any],
    metrics: dict[str, Any],
) -> dict[str, Any]:
    used = [c for c in columns if c.type != "drop"]
    row = example_row(X)
    return {
        "target": target,
        "task": task,
        "features": [feature_schema(c, X[c.name], row[c.name]) for c in used],
        "classes": [c.item() if isinstance(c, np.generic) else c for c in classes],
        "metrics": metrics,
        "dropped": [{"name": c.name, "reason": c.reason} for c in columns if c.type == "drop"],
    }


def draw_chart(path: Path, task: str, y_test: Any, predicted: Any, classes: list[Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    if task == "classification":
        size = min(4 + 0.45 * len(classes), 14)
        fig, ax = plt.subplots(figsize=(size, size * 0.85))
        ConfusionMatrixDisplay.from_predictions(
            y_test,
            predicted,
            labels=classes,
            display_labels=[str(c) for c in classes],
            ax=ax,
            cmap="Blues",
            colorbar=False,
            xticks_rotation=45 if len(classes) > 4 else "horizontal",
        )
        ax.set_title("Confusion matrix (test split)")
    else:
        fig, ax = plt.subplots(figsize=(6, 5.5))
        ax.scatter(y_test, predicted, alpha=0.6, s=18, color="#2563eb", edgecolors="none")
        low = float(min(np.min(y_test), np.min(predicted)))
        high = float(max(np.max(y_test), np.max(predicted)))
        ax.plot([low, high], [low, high], color="#64748b", linestyle="--", linewidth=1)
        ax.set_xlabel("actual")
        ax.set_ylabel("predicted")
        ax.set_title("Predicted vs actual (test split)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, default=plain), encoding="utf-8")


# ------------------------------------------------------------------ main


def time_budget(task_info: dict[str, Any]) -> float:
    value = task_info.get("time_budget_seconds")
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return max(float(value), MIN_BUDGET_SECONDS)
    return DEFAULT_BUDGET_SECONDS


def train(workdir: Path) -> dict[str, Any]:
    task_info = load_task(workdir)
    task = task_info["task"]
    budget = time_budget(task_info)
    deadline = STARTED + budget
    frame, target = load_data(workdir, task_info)
    features, y = prepare_target(frame, target, task)
    columns = analyse_columns(features)
    used = [c for c in columns if c.type != "drop"]
    say(f"loaded {len(features)} rows, {len(used)} features; time budget {budget:.0f}s")
    for col in columns:
        if col.type == "drop":
            say(f'dropped "{col.name}": {col.reason}')
    if not used:
        raise DataError("no usable feature columns left after dropping ids, text and empty columns")
    X = coerce_features(features, used)

    X_train, X_test, y_train, y_test = split(X, y, task)
    say(f"split {len(X_train)} train / {len(X_test)} test rows")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = search(search_problem(X_train, y_train, task, used), deadline, say)
        fit_started = time.monotonic()
        model = clone(result.final).fit(X_train, y_train)
        fit_seconds = time.monotonic() - fit_started
        metrics, predicted = evaluate(
            result.chosen.label, model, X_train, X_test, y_train, y_test, task
        )
        metrics |= search_report(result, budget)
        importances = feature_importances(model, X_test, y_test, metrics["metric"], deadline)
        # Scored on the test split, the model is then fitted again on every row, test split
        # included (a fifth more data counts on small sets), when the budget has room.
        metrics["refit_on_all_rows"] = time.monotonic() + REFIT_SLACK * fit_seconds < deadline
        if metrics["refit_on_all_rows"]:
            model = clone(result.final).fit(X, y)
    metrics["warnings"] = score_warnings(metrics, result)
    say(
        f"test {metrics['metric']} {metrics['score']:.3f} (baseline {metrics['baseline']:.3f}) "
        f"with {metrics['model']}"
    )
    for warning in metrics["warnings"]:
        say(f"warning: {warning}")

    classes = list(model.classes_) if task == "classification" else []
    joblib.dump(model, workdir / "model.joblib")
    schema = build_schema(target, task, columns, X, classes, metrics)
    schema["importances"] = importances
    draw_chart(workdir / "chart.png", task, y_test, predicted, classes)
    metrics["seconds"] = round(time.monotonic() - STARTED, 1)  # schema["metrics"] is this dict
    write_json(workdir / "metrics.json", metrics)
    write_json(workdir / "schema.json", schema)
    say(f"wrote model.joblib, metrics.json, schema.json, chart.png in {metrics['seconds']:.1f}s")
    return metrics


def main() -> int:
    try:
        train(Path.cwd())
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
