"""The model search of TrainBot's offline template: candidates, cross-validation, a time budget.

train.py hands over the coerced training split and a deadline; `search` returns the chosen
model (unfitted) and the leaderboard of everything it tried. Scikit-learn only: it is what
every sandbox has. Every model it returns is built from library classes and callables, so
model.joblib unpickles in app.py without this file.

How the budget is spent: a fixed queue of strong defaults first (gradient boosting, a linear
model, forests; log-target variants for skewed positive targets), then random gradient
boosting configurations while time is left, then blends of the best, which cost no extra
cross-validation because every trial keeps its out-of-fold predictions. Before each trial the
search checks that the trial and the final fit still fit before the deadline; a trial that
runs past it is abandoned between folds. Selection ranks by the mean fold score less one
standard error, so one lucky fold does not win.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
    VotingClassifier,
    VotingRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.metrics import balanced_accuracy_score, log_loss, r2_score
from sklearn.model_selection import (
    FixedThresholdClassifier,
    RepeatedKFold,
    RepeatedStratifiedKFold,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

SEED = 42
MAX_ONE_HOT = 60  # categories a linear model one-hot encodes per column; the rest are "other"
MAX_TREE_CATEGORIES = 250  # gradient boosting takes at most 255 bins per categorical feature
SKEWED = 1.0  # target skewness above which log-scale variants join the search
RANGE_MARGIN = 0.1  # predictions may leave the training target range by this share of it
MAX_BLEND = 3
COMPLEXITY = {"linear": 0, "boosting": 1, "forest": 1, "blend": 2}
GREEDY_STEPS = 10  # ensemble selection: at most this many votes
FIXED_RESERVE_SECONDS = 2.0  # writing the model, schema and chart after the search
IMPORTANCE_ROWS = 2000  # train.py's permutation importance scores at most this many rows
TOP_KEPT = 8  # trials whose out-of-fold predictions are kept for blending
# Random configurations stop early after this many in a row fail to improve the best by
# more than IMPROVEMENT: on small or easy data more tuning only spends the user's time.
PATIENCE = 8
IMPROVEMENT = 0.001


@dataclass
class Trial:
    """One candidate and what cross-validation said of it."""

    label: str
    family: str  # "boosting" | "linear" | "forest" | "blend"
    estimator: Any  # prep + model, unfitted
    fold_scores: list[float] = field(default_factory=list)
    seconds: float = 0.0  # wall time of its cross-validation
    fit_seconds: float = 0.0  # the slowest single fold fit
    row_seconds: float = 0.0  # prediction time per row, from its validation folds
    oof: np.ndarray | None = None  # out-of-fold probabilities (classes) or predictions
    threshold: float | None = None
    members: list[Trial] = field(default_factory=list)
    weights: list[int] = field(default_factory=list)  # a blend's votes per member
    log_loss: float = math.inf  # classifiers: of the pooled out-of-fold probabilities
    note: str = ""

    @property
    def mean(self) -> float:
        return float(np.mean(self.fold_scores)) if self.fold_scores else -math.inf

    @property
    def std(self) -> float:
        return float(np.std(self.fold_scores)) if len(self.fold_scores) > 1 else 0.0

    @property
    def rank_score(self) -> float:
        """The mean less one standard error: a lucky fold alone cannot put a trial first."""
        if not self.fold_scores:
            return -math.inf
        return self.mean - self.std / math.sqrt(len(self.fold_scores))

    def entry(self) -> dict[str, Any]:
        ok = bool(self.fold_scores)
        row: dict[str, Any] = {
            "model": self.label,
            "cv_score": round(self.mean, 4) if ok else None,
            "cv_std": round(self.std, 4) if ok else None,
            "seconds": round(self.seconds, 2),
        }
        if self.note:
            row["note"] = self.note
        return row


@dataclass
class Problem:
    """The training split as the search sees it."""

    X: pd.DataFrame
    y: pd.Series
    task: str  # "classification" | "regression"
    numbers: list[str]
    categories: list[str]
    dates: list[str]
    date_prep: Callable[[], Pipeline]
    date_width: int = 0  # columns date_prep makes of one date
    classes: np.ndarray = field(default_factory=lambda: np.array([]))
    y_range: tuple[float, float] = (-math.inf, math.inf)

    @property
    def n_features(self) -> int:
        return len(self.numbers) + len(self.categories) + len(self.dates)

    @property
    def binary(self) -> bool:
        return self.task == "classification" and len(self.classes) == 2

    @property
    def skewed_positive(self) -> bool:
        if self.task != "regression" or float(self.y.min()) < 0:
            return False
        return float(self.y.skew()) > SKEWED


@dataclass
class SearchResult:
    chosen: Trial
    leaderboard: list[Trial]
    final: Any  # the estimator to fit on the whole training split
    cv_metric: str


def cv_metric(task: str) -> str:
    return "balanced_accuracy" if task == "classification" else "r2"


def target_range(y: pd.Series) -> tuple[float, float]:
    """The range predictions are kept in: the training range plus a margin each side."""
    low, high = float(y.min()), float(y.max())
    margin = RANGE_MARGIN * (high - low)
    floor = 0.0 if low >= 0 else low - margin  # a positive target stays positive
    return max(floor, low - margin), high + margin


# ------------------------------------------------------------ preprocessing


def linear_prep(p: Problem) -> ColumnTransformer:
    """Scaled numbers with missing-value flags, one-hot categories, date parts."""
    parts: list[tuple[str, Any, Any]] = []
    if p.numbers:
        numeric = Pipeline(
            [
                ("impute", SimpleImputer(strategy="median", add_indicator=True)),
                ("scale", StandardScaler()),
            ]
        )
        parts.append(("numbers", numeric, p.numbers))
    if p.categories:
        encode = Pipeline(
            [
                ("impute", SimpleImputer(strategy="constant", fill_value="(missing)")),
                (
                    "encode",
                    OneHotEncoder(
                        handle_unknown="infrequent_if_exist",
                        max_categories=MAX_ONE_HOT,
                        sparse_output=False,
                    ),
                ),
            ]
        )
        parts.append(("categories", encode, p.categories))
    parts += [(f"date{i}", p.date_prep(), name) for i, name in enumerate(p.dates)]
    return ColumnTransformer(parts, remainder="drop")


def tree_prep(p: Problem, *, impute: bool) -> ColumnTransformer:
    """Numbers as they are, categories as ordinal codes (unknown and missing become NaN).

    Gradient boosting takes NaN natively; the forests get an imputer (older scikit-learn
    forests refuse NaN).
    """
    parts: list[tuple[str, Any, Any]] = []
    if p.numbers:
        numbers: Any = (
            SimpleImputer(strategy="median", add_indicator=True) if impute else "passthrough"
        )
        parts.append(("numbers", numbers, p.numbers))
    if p.categories:
        steps: list[tuple[str, Any]] = [
            (
                "encode",
                OrdinalEncoder(
                    handle_unknown="use_encoded_value",
                    unknown_value=np.nan,
                    max_categories=MAX_TREE_CATEGORIES,
                ),
            )
        ]
        if impute:
            steps.append(("impute", SimpleImputer(strategy="constant", fill_value=-1)))
        parts.append(("categories", Pipeline(steps), p.categories))
    parts += [(f"date{i}", p.date_prep(), name) for i, name in enumerate(p.dates)]
    return ColumnTransformer(parts, remainder="drop")


def category_mask(p: Problem) -> list[bool] | None:
    """Which columns of tree_prep's output (without imputation) are categorical."""
    if not p.categories:
        return None
    return (
        [False] * len(p.numbers)
        + [True] * len(p.categories)
        + [False] * (p.date_width * len(p.dates))
    )


# ------------------------------------------------------------- candidates


def boosting(p: Problem, **params: Any) -> Any:
    big = len(p.y) >= 2000
    lr = params.get("learning_rate", 0.1)
    settings: dict[str, Any] = {
        "categorical_features": category_mask(p),
        "random_state": SEED,
        # On enough rows early stopping picks the number of trees; on few it would take
        # a tenth of an already small training fold, so the count follows the rate.
        "early_stopping": big,
        "max_iter": 1000 if big else int(min(500, max(50, 10 / lr))),
        "n_iter_no_change": 20,
    } | params
    if p.task == "classification":
        return HistGradientBoostingClassifier(**settings)
    settings.pop("class_weight", None)
    return HistGradientBoostingRegressor(**settings)


def with_prep(prep: ColumnTransformer, model: Any) -> Pipeline:
    return Pipeline([("prep", prep), ("model", model)])


def on_log_scale(estimator: Any) -> TransformedTargetRegressor:
    return TransformedTargetRegressor(
        regressor=estimator, func=np.log1p, inverse_func=np.expm1, check_inverse=False
    )


def settings_text(params: dict[str, Any], short: dict[str, str] | None = None) -> str:
    """ "lr=0.1, leaves=31": a candidate's settings as its label shows them."""
    names = short or {}
    return ", ".join(
        f"{names.get(k, k)}={v:g}" if isinstance(v, float) else f"{names.get(k, k)}={v}"
        for k, v in params.items()
    )


def boosting_label(params: dict[str, Any]) -> str:
    short = {
        "learning_rate": "lr",
        "max_leaf_nodes": "leaves",
        "min_samples_leaf": "min_leaf",
        "l2_regularization": "l2",
        "max_features": "features",
        "class_weight": "weights",
    }
    return f"HistGradientBoosting({settings_text(params, short)})"


def default_queue(p: Problem) -> Iterator[tuple[str, str, Any]]:
    """The strong defaults, best bets first: (label, family, estimator)."""
    balanced = {"class_weight": "balanced"} if p.task == "classification" else {}
    first = {"learning_rate": 0.1, "max_leaf_nodes": 31, "min_samples_leaf": 20} | balanced
    yield (
        boosting_label(first),
        "boosting",
        with_prep(tree_prep(p, impute=False), boosting(p, **first)),
    )
    if p.task == "classification":
        linear: Any = LogisticRegression(C=1.0, max_iter=3000, class_weight="balanced")
        yield "LogisticRegression(C=1)", "linear", with_prep(linear_prep(p), linear)
    else:
        ridge = RidgeCV(alphas=np.logspace(-3, 3, 13))
        yield "RidgeCV", "linear", with_prep(linear_prep(p), ridge)
    if p.skewed_positive:
        yield (
            "log-target " + boosting_label(first),
            "boosting",
            on_log_scale(with_prep(tree_prep(p, impute=False), boosting(p, **first))),
        )
        ridge = RidgeCV(alphas=np.logspace(-3, 3, 13))
        yield "log-target RidgeCV", "linear", on_log_scale(with_prep(linear_prep(p), ridge))
    yield from forests(p)
    second = {
        "learning_rate": 0.05,
        "max_leaf_nodes": 15,
        "min_samples_leaf": 10,
        "l2_regularization": 1.0,
    }
    yield (
        boosting_label(second),
        "boosting",
        with_prep(tree_prep(p, impute=False), boosting(p, **second)),
    )
    if p.task == "classification":
        for c in (0.1, 10.0):
            linear = LogisticRegression(C=c, max_iter=3000, class_weight="balanced")
            yield f"LogisticRegression(C={c:g})", "linear", with_prep(linear_prep(p), linear)


FOREST_KINDS = {
    ("classification", "RandomForest"): RandomForestClassifier,
    ("classification", "ExtraTrees"): ExtraTreesClassifier,
    ("regression", "RandomForest"): RandomForestRegressor,
    ("regression", "ExtraTrees"): ExtraTreesRegressor,
}


def forest(p: Problem, kind: str, **params: Any) -> tuple[str, Pipeline]:
    """A random forest or extra trees, sized to the data: (label, pipeline)."""
    n = len(p.y)
    # Forests grow with the data; past 20,000 rows each tree sees a sample of that size.
    sample = None if n <= 20_000 else 20_000 / n
    trees = 200 if n <= 5000 else 100
    settings: dict[str, Any] = {
        "n_estimators": trees,
        "max_samples": sample,
        "n_jobs": 1,
        "random_state": SEED,
    }
    if kind == "ExtraTrees":
        settings["bootstrap"] = sample is not None  # max_samples needs bootstrap samples
    if p.task == "classification":
        settings["class_weight"] = "balanced_subsample"
    else:
        settings |= {"min_samples_leaf": 2, "max_features": 0.5}
    settings |= params
    shown = f", {settings_text(params)}" if params else ""
    model = FOREST_KINDS[(p.task, kind)](**settings)
    return f"{kind}({trees} trees{shown})", with_prep(tree_prep(p, impute=True), model)


def forests(p: Problem) -> Iterator[tuple[str, str, Any]]:
    for kind in ("RandomForest", "ExtraTrees"):
        label, model = forest(p, kind)
        yield label, "forest", model


def random_candidates(p: Problem, rng: np.random.Generator) -> Iterator[tuple[str, str, Any]]:
    """Random configurations, mostly gradient boosting, some forests, while the budget lasts.

    Skewed positive targets get half of them on a log scale.
    """
    while True:
        if rng.random() < 0.7:
            label, model, family = *random_boosting(p, rng), "boosting"
        else:
            label, model, family = *random_forest(p, rng), "forest"
        if p.skewed_positive and rng.random() < 0.5:
            yield "log-target " + label, family, on_log_scale(model)
        else:
            yield label, family, model


def random_boosting(p: Problem, rng: np.random.Generator) -> tuple[str, Pipeline]:
    n = len(p.y)
    leaf_choices = [v for v in (2, 5, 10, 20, 50, 100) if v <= max(2, n // 20)]
    params: dict[str, Any] = {
        "learning_rate": round(float(np.exp(rng.uniform(np.log(0.02), np.log(0.3)))), 3),
        "max_leaf_nodes": int(rng.choice([7, 15, 31, 63, 127])),
        "min_samples_leaf": int(rng.choice(leaf_choices)),
        "l2_regularization": float(rng.choice([0.0, 0.01, 0.1, 1.0, 10.0])),
        "max_features": float(rng.choice([0.5, 0.8, 1.0])),
    }
    if p.task == "classification" and rng.random() < 0.5:
        params["class_weight"] = "balanced"
    model = with_prep(tree_prep(p, impute=False), boosting(p, **params))
    return boosting_label(params), model


def random_forest(p: Problem, rng: np.random.Generator) -> tuple[str, Pipeline]:
    params: dict[str, Any] = {
        "max_features": float(rng.choice([0.2, 0.33, 0.5, 0.7, 1.0])),
        "min_samples_leaf": int(rng.choice([1, 2, 3, 5, 10])),
    }
    return forest(p, str(rng.choice(["RandomForest", "ExtraTrees"])), **params)


# ---------------------------------------------------------- cross-validation


def make_folds(p: Problem) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(repeat, training rows, validation rows) for every fold.

    Small sets are cross-validated more than once with different shuffles: on a few hundred
    rows one 5-fold split's luck decides between candidates as much as they differ.
    """
    n = len(p.y)
    folds = 5 if n < 5000 else 3
    repeats = 3 if n < 500 else 2 if n < 2000 else 1
    index = np.arange(n)
    splitter: Any = RepeatedKFold(n_splits=min(folds, n), n_repeats=repeats, random_state=SEED)
    strata: Any = None
    if p.task == "classification":
        smallest = int(p.y.value_counts().min())
        if smallest >= 2:
            folds = min(folds, smallest)
            splitter = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=SEED)
            strata = p.y
    return [
        (i // folds, train, val) for i, (train, val) in enumerate(splitter.split(index, strata))
    ]


def out_of_fold(p: Problem, fitted: Any, rows: np.ndarray) -> np.ndarray:
    X = p.X.iloc[rows]
    if p.task == "regression":
        return np.clip(np.asarray(fitted.predict(X), dtype=float), *p.y_range)
    proba = np.zeros((len(rows), len(p.classes)))
    # A fold's model knows only the classes its training rows had; place them by label.
    columns = np.searchsorted(p.classes, fitted.classes_)
    proba[:, columns] = fitted.predict_proba(X)
    return proba


def fold_scores(
    p: Problem, oof: np.ndarray, folds: list[Any], threshold: float | None
) -> list[float]:
    scores = []
    for repeat, _, rows in folds:
        truth, predicted = p.y.iloc[rows], oof[repeat, rows]
        if p.task == "regression":
            scores.append(float(r2_score(truth, predicted)))
        else:
            scores.append(float(balanced_accuracy_score(truth, labels(p, predicted, threshold))))
    return scores


def labels(p: Problem, proba: np.ndarray, threshold: float | None) -> np.ndarray:
    if threshold is not None:
        return p.classes[(proba[:, 1] >= threshold).astype(int)]
    return p.classes[np.argmax(proba, axis=1)]


def tune_threshold(p: Problem, oof: np.ndarray, y: pd.Series, cuts: int = 99) -> float:
    """The cut on the positive class's out-of-fold probability with the best balanced accuracy.

    Ties go to the cut nearest 0.5, so a flat optimum does not wander.
    """
    positive = oof[:, 1]
    truth = y.to_numpy() == p.classes[1]
    n_true, n_false = max(int(truth.sum()), 1), max(int((~truth).sum()), 1)
    candidates = np.unique(np.quantile(positive, np.linspace(0.01, 0.99, cuts)))
    best, best_score = 0.5, -math.inf
    for cut in np.append(candidates, 0.5):
        predicted = positive >= cut
        # Balanced accuracy, the mean of the two recalls, in numpy: this loop runs often.
        score = ((predicted & truth).sum() / n_true + (~predicted & ~truth).sum() / n_false) / 2
        better = score > best_score + 1e-9
        tie = abs(score - best_score) <= 1e-9 and abs(cut - 0.5) < abs(best - 0.5)
        if better or tie:
            best, best_score = float(cut), score
    return round(best, 4)


class Search:
    def __init__(self, p: Problem, deadline: float, say: Callable[[str], None]) -> None:
        self.p = p
        self.deadline = deadline
        self.say = say
        self.folds = make_folds(p)
        self.trials: list[Trial] = []
        self.slowest: dict[str, float] = {}  # family -> slowest cross-validation seen

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def reserve(self, trial: Trial | None = None) -> float:
        """Time to keep after the search for the best trial so far: its fit on the whole
        split and again on every row (train.py's refit), one pass of permutation importance
        (a prediction of the test sample per feature), and writing the outputs."""
        best = trial or self.best()
        if best is None:
            return FIXED_RESERVE_SECONDS
        members = best.members or [best]
        fit = sum(m.fit_seconds for m in members) * 1.3 * 2
        test_rows = min(IMPORTANCE_ROWS, len(self.p.y) // 4)
        importance = sum(m.row_seconds for m in members) * test_rows * self.p.n_features
        return fit + importance + FIXED_RESERVE_SECONDS

    def best(self) -> Trial | None:
        done = [t for t in self.trials if t.fold_scores]
        return max(done, key=lambda t: t.rank_score) if done else None

    def expected(self, family: str) -> float:
        """The time a trial of this family should take: its slowest so far, else nothing
        known (it runs, and the fold check stops it if it turns out too slow)."""
        return self.slowest.get(family, 0.0)

    def run(self, label: str, family: str, estimator: Any) -> Trial | None:
        """Cross-validates one candidate; None when it did not fit in the time left.

        Folds stop when the next one would not fit. The first trial keeps the folds it
        finished (a quick default beats no model); any later one is abandoned.
        """
        if self.best() is not None and self.expected(family) + self.reserve() > self.left():
            return None
        trial = Trial(label, family, estimator)
        n_outputs = len(self.p.classes) if self.p.task == "classification" else 0
        repeats = self.folds[-1][0] + 1
        shape = (repeats, len(self.p.y), n_outputs) if n_outputs else (repeats, len(self.p.y))
        oof = np.zeros(shape)
        started = time.monotonic()
        done: list[tuple[int, np.ndarray, np.ndarray]] = []
        for repeat, train_rows, rows in self.folds:
            per_fold = (time.monotonic() - started) / len(done) if done else 0.0
            if done and per_fold + self.reserve(self.best() or trial) > self.left():
                if self.best() is None:
                    trial.note = f"scored on {len(done)} of {len(self.folds)} folds: out of time"
                    break
                trial.note = "stopped: out of time"
                self.give_up(trial, started)
                return None
            fit_started = time.monotonic()
            try:
                fitted = clone(estimator).fit(self.p.X.iloc[train_rows], self.p.y.iloc[train_rows])
                trial.fit_seconds = max(trial.fit_seconds, time.monotonic() - fit_started)
                predict_started = time.monotonic()
                oof[repeat, rows] = out_of_fold(self.p, fitted, rows)
                per_row = (time.monotonic() - predict_started) / len(rows)
                trial.row_seconds = max(trial.row_seconds, per_row)
            except Exception as error:  # one candidate's failure is its own, not the job's
                trial.note = f"failed: {first_line(error)}"
                self.give_up(trial, started)
                return None
            done.append((repeat, train_rows, rows))
        trial.seconds = time.monotonic() - started
        self.slowest[family] = max(self.slowest.get(family, 0.0), trial.seconds)
        self.score(trial, oof, done)
        self.trials.append(trial)
        self.keep_top_oof()
        threshold = f", threshold {trial.threshold:.3f}" if trial.threshold is not None else ""
        self.say(
            f"  {label}: cv {cv_metric(self.p.task)} {trial.mean:.3f} ± {trial.std:.3f}"
            f"{threshold} ({trial.seconds:.1f}s){'; ' + trial.note if trial.note else ''}"
        )
        return trial

    def give_up(self, trial: Trial, started: float) -> None:
        trial.seconds = time.monotonic() - started
        self.trials.append(trial)
        self.say(f"  {trial.label}: {trial.note}")

    def score(self, trial: Trial, oof: np.ndarray, folds: list[Any]) -> None:
        """Fold scores from out-of-fold predictions; partial trials keep none for blending."""
        complete = len(folds) == len(self.folds)
        trial.oof = oof if complete else None
        if self.p.task == "classification":
            pooled, truth = self.pooled(oof, folds)
            trial.log_loss = float(log_loss(truth, np.clip(pooled, 1e-6, 1), labels=self.p.classes))
            if self.p.binary:
                trial.threshold = tune_threshold(self.p, pooled, truth)
        trial.fold_scores = fold_scores(self.p, oof, folds, trial.threshold)

    def keep_top_oof(self) -> None:
        ranked = sorted((t for t in self.trials if t.oof is not None), key=lambda t: -t.rank_score)
        for trial in ranked[TOP_KEPT:]:
            trial.oof = None

    def blends(self) -> None:
        """Averages of the best trials, scored from their out-of-fold predictions (no refits)."""
        ranked = sorted(
            (t for t in self.trials if t.oof is not None and not t.members),
            key=lambda t: -t.rank_score,
        )
        groups: list[list[Trial]] = [
            ranked[:k] for k in range(2, MAX_BLEND + 1) if len(ranked) >= k
        ]
        by_family: dict[str, Trial] = {}
        for trial in ranked:
            by_family.setdefault(trial.family, trial)
        if len(by_family) >= 2:
            groups.append(list(by_family.values())[:MAX_BLEND])
        votes = [[(m, 1) for m in members] for members in groups]
        selected = self.ensemble_selection(ranked)
        if len(selected) > 1:
            votes.append(selected)
        seen: set[tuple[tuple[str, int], ...]] = set()
        for group in votes:
            key = tuple(sorted((m.label, w) for m, w in group))
            if key in seen:
                continue
            seen.add(key)
            members, weights = [m for m, _ in group], [w for _, w in group]
            blend = Trial(blend_label(group), "blend", None, members=members, weights=weights)
            blend.fit_seconds = sum(m.fit_seconds for m in members)
            blend.row_seconds = sum(m.row_seconds for m in members)
            if self.reserve(blend) > self.left() + FIXED_RESERVE_SECONDS:
                continue  # fitting every member again would overrun the budget
            self.score(blend, blend_outputs(group), self.folds)
            self.trials.append(blend)
            self.say(
                f"  {blend.label}: cv {cv_metric(self.p.task)} {blend.mean:.3f} ± {blend.std:.3f}"
            )

    def ensemble_selection(self, ranked: list[Trial]) -> list[tuple[Trial, int]]:
        """Greedy ensemble selection (Caruana et al., 2004): add, with repeats, the trial
        whose vote most improves the blend's mean fold score; stop when none does."""
        votes: dict[int, int] = {}
        best_score = -math.inf
        for _ in range(GREEDY_STEPS):
            if self.left() < self.reserve():
                break
            step: tuple[float, int] | None = None
            for i in range(len(ranked)):
                trying = votes | {i: votes.get(i, 0) + 1}
                group = [(ranked[j], w) for j, w in trying.items()]
                score = self.quick_score(blend_outputs(group))
                if step is None or score > step[0]:
                    step = (score, i)
            if step is None or step[0] <= best_score + 1e-6:
                break
            best_score = step[0]
            votes[step[1]] = votes.get(step[1], 0) + 1
        return [(ranked[j], w) for j, w in votes.items()]

    def pooled(self, oof: np.ndarray, folds: list[Any]) -> tuple[np.ndarray, pd.Series]:
        """The folds' out-of-fold predictions stacked, with the truth in the same order."""
        stacked = np.concatenate([oof[repeat, rows] for repeat, _, rows in folds])
        return stacked, pd.concat([self.p.y.iloc[rows] for _, _, rows in folds])

    def quick_score(self, oof: np.ndarray) -> float:
        """The mean fold score, with a coarser threshold search than the final one."""
        threshold = None
        if self.p.binary:
            pooled, truth = self.pooled(oof, self.folds)
            threshold = tune_threshold(self.p, pooled, truth, cuts=19)
        return float(np.mean(fold_scores(self.p, oof, self.folds, threshold)))


def blend_outputs(group: list[tuple[Trial, int]]) -> np.ndarray:
    total = sum(weight for _, weight in group)
    return sum(m.oof * (w / total) for m, w in group if m.oof is not None)  # type: ignore[return-value]


def blend_label(group: list[tuple[Trial, int]]) -> str:
    return "average of " + " + ".join(f"{m.label}×{w}" if w > 1 else m.label for m, w in group)


def simplest_within_one_error(trials: list[Trial], best: Trial) -> Trial:
    """The one-standard-error rule (Breiman et al., 1984): of the trials whose mean fold
    score is within one standard error of the best's, the simplest (a linear model before
    trees, a single model before a blend). Differences that small are the folds' noise, and
    the simpler model is faster to serve and generalises as well. Among equally simple ones
    the out-of-fold log loss decides (a proper score, finer than counting right answers).
    Used for classifiers only (see search)."""
    error = best.std / math.sqrt(len(best.fold_scores)) if best.fold_scores else 0.0
    close = [t for t in trials if t.fold_scores and t.mean >= best.mean - error]
    return min(close, key=lambda t: (COMPLEXITY[t.family], t.log_loss, -t.rank_score))


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:120] if text else type(error).__name__


def final_estimator(p: Problem, trial: Trial) -> Any:
    """The chosen trial as one estimator: blended, thresholded and range-guarded as scored."""
    if trial.members:
        named = [(f"m{i}", m.estimator) for i, m in enumerate(trial.members)]
        weights = trial.weights or None
        model: Any = (
            VotingClassifier(named, voting="soft", weights=weights)
            if p.task == "classification"
            else VotingRegressor(named, weights=weights)
        )
    else:
        model = trial.estimator
    if p.task == "regression":
        keep = functools.partial(np.clip, a_min=p.y_range[0], a_max=p.y_range[1])
        return TransformedTargetRegressor(
            regressor=model, func=keep, inverse_func=keep, check_inverse=False
        )
    if trial.threshold is not None:
        return FixedThresholdClassifier(
            model, threshold=trial.threshold, response_method="predict_proba"
        )
    return model


def search(p: Problem, deadline: float, say: Callable[[str], None]) -> SearchResult:
    p.y_range = target_range(p.y) if p.task == "regression" else p.y_range
    if p.task == "classification":
        p.classes = np.array(sorted(pd.unique(p.y)))
    runner = Search(p, deadline, say)
    repeats = runner.folds[-1][0] + 1
    per_repeat = len(runner.folds) // repeats
    times = f" repeated {repeats} times" if repeats > 1 else ""
    say(f"searching for {runner.left():.0f}s with {per_repeat}-fold cross-validation{times}")
    for label, family, estimator in default_queue(p):
        runner.run(label, family, estimator)
    rng = np.random.default_rng(SEED)
    skipped = stale = 0
    for label, family, estimator in random_candidates(p, rng):
        if runner.left() <= runner.reserve() or skipped >= 3 or stale >= PATIENCE:
            break
        before = runner.best()
        if runner.run(label, family, estimator) is None:
            skipped += 1
            continue
        after = runner.best()
        gained = before is None or (
            after is not None and after.rank_score > before.rank_score + IMPROVEMENT
        )
        stale = 0 if gained else stale + 1
    runner.blends()
    best = runner.best()
    if best is None:
        reasons = "; ".join(f"{t.label}: {t.note}" for t in runner.trials[:3])
        raise RuntimeError(f"no candidate model could be trained ({reasons})")
    # Balanced accuracy on a fold counts right answers, so on small sets trials tie or
    # differ by a row or two; R^2 is continuous and its best is kept as ranked (measured:
    # preferring simpler regressors lost up to 0.02 R^2 in the quality benchmark).
    chosen = simplest_within_one_error(runner.trials, best) if p.task == "classification" else best
    if chosen is not best:
        say(f"{best.label} scored best, but {chosen.label} is within one standard error of it")
    board = sorted(runner.trials, key=lambda t: -t.rank_score)
    tried = sum(1 for t in runner.trials if not t.members)
    say(f"tried {tried} models and {len(board) - tried} blends; chose {chosen.label}")
    return SearchResult(chosen, board, final_estimator(p, chosen), cv_metric(p.task))
