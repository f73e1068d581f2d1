"""The template's model search on small data made here: thresholds, log scale, range guard."""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import TransformedTargetRegressor
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import FixedThresholdClassifier
from threadpoolctl import threadpool_limits

TEMPLATES = Path(__file__).resolve().parents[2] / "pipeline" / "codegen" / "templates"


def load_search() -> ModuleType:
    """model_search.py as the sandbox imports it: a plain module beside train.py."""
    spec = importlib.util.spec_from_file_location("model_search", TEMPLATES / "model_search.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["model_search"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


ms = load_search()


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One OpenMP/BLAS thread, as train.py runs: threads spinning on a busy machine make
    fit times swing tenfold, which the timing assertions here would feel."""
    with threadpool_limits(1):
        yield


def problem(X: pd.DataFrame, y: pd.Series, task: str) -> object:
    return ms.Problem(
        X=X,
        y=y,
        task=task,
        numbers=[c for c in X.columns if X[c].dtype.kind in "fi"],
        categories=[c for c in X.columns if X[c].dtype == object],
        dates=[],
        date_prep=lambda: None,
    )


def quiet(_: str) -> None:
    pass


def imbalanced_binary(n: int = 1500, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """About 8% positives that overlap the negatives: argmax alone misses most of them."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    noise = rng.normal(size=n)
    positive = signal + rng.normal(scale=1.2, size=n) > 2.0
    X = pd.DataFrame({"signal": signal, "noise": noise})
    X.loc[rng.random(n) < 0.3, "noise"] = np.nan  # many missing values, too
    return X, pd.Series(np.where(positive, "yes", "no"), dtype=object)


def test_threshold_is_tuned_on_out_of_fold_probabilities_for_balanced_accuracy() -> None:
    X, y = imbalanced_binary()
    p = problem(X, y, "classification")
    p.classes = np.array(["no", "yes"])
    # Positives score 0.3, negatives 0.1: any cut between them separates the classes,
    # which argmax (a cut at 0.5) never does.
    positive = np.where(y == "yes", 0.3, 0.1)
    oof = np.column_stack([1 - positive, positive])
    cut = ms.tune_threshold(p, oof, y)
    assert 0.1 < cut <= 0.3
    assert balanced_accuracy_score(y, p.classes[(positive >= cut).astype(int)]) == 1.0
    assert balanced_accuracy_score(y, p.classes[np.argmax(oof, axis=1)]) == 0.5


def test_binary_search_returns_a_thresholded_model_that_beats_argmax() -> None:
    X, y = imbalanced_binary()
    result = ms.search(problem(X, y, "classification"), time.monotonic() + 8, quiet)
    assert result.chosen.threshold is not None
    assert isinstance(result.final, FixedThresholdClassifier)
    assert result.final.threshold == result.chosen.threshold
    X_new, y_new = imbalanced_binary(seed=1)
    fitted = result.final.fit(X, y)
    tuned = balanced_accuracy_score(y_new, fitted.predict(X_new))
    argmax = balanced_accuracy_score(y_new, fitted.estimator_.predict(X_new))
    assert tuned > argmax


def skewed_prices(n: int = 1200, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """A price-like target: log-linear in the features, so a few rows are very large."""
    rng = np.random.default_rng(seed)
    size = rng.uniform(0, 3, size=n)
    grade = rng.choice(["a", "b", "c"], size=n)
    bump = pd.Series(grade).map({"a": 0.0, "b": 0.5, "c": 1.0}).to_numpy()
    price = np.exp(1.5 * size + bump + rng.normal(scale=0.2, size=n))
    return pd.DataFrame({"size": size, "grade": grade}), pd.Series(price)


def test_skewed_positive_targets_are_searched_on_a_log_scale_and_it_wins_here() -> None:
    X, y = skewed_prices()
    p = problem(X, y, "regression")
    assert p.skewed_positive
    result = ms.search(p, time.monotonic() + 8, quiet)
    labels = [trial.label for trial in result.leaderboard]
    assert any(label.startswith("log-target") for label in labels)
    logged = [t for t in result.leaderboard if t.label.startswith("log-target") and t.fold_scores]
    plain = [t for t in result.leaderboard if t.family != "blend" and not t.label.startswith("log")]
    # The log-linear truth: the best log-scale linear model beats the best raw linear one.
    best_log_linear = max(t.mean for t in logged if t.family == "linear")
    best_raw_linear = max(t.mean for t in plain if t.family == "linear" and t.fold_scores)
    assert best_log_linear > best_raw_linear


def test_symmetric_targets_get_no_log_scale_candidates() -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"x": rng.normal(size=300)})
    y = pd.Series(3 * X["x"] + rng.normal(size=300) + 50)
    p = problem(X, y, "regression")
    assert not p.skewed_positive
    labels = [label for label, _, _ in ms.default_queue(p)]
    assert not any(label.startswith("log-target") for label in labels)


def test_predictions_stay_within_a_margin_of_the_training_range() -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"x": rng.uniform(0, 10, size=400)})
    y = pd.Series(10 * X["x"] + rng.uniform(0, 1, size=400))  # 0 .. 101
    p = problem(X, y, "regression")
    result = ms.search(p, time.monotonic() + 10, quiet)
    model = result.final.fit(X, y)
    assert isinstance(model, TransformedTargetRegressor)
    low, high = p.y_range
    assert high == pytest.approx(y.max() + 0.1 * (y.max() - y.min()))
    assert low == 0.0  # a positive target stays positive
    far = pd.DataFrame({"x": [-1000.0, 5.0, 1e6]})
    predicted = model.predict(far)
    assert predicted.min() >= low and predicted.max() <= high
    assert predicted[1] == pytest.approx(50, abs=3)  # in range, untouched


def test_a_lucky_fold_does_not_win() -> None:
    steady = ms.Trial("steady", "linear", None, fold_scores=[0.80, 0.81, 0.80, 0.79, 0.80])
    lucky = ms.Trial("lucky", "boosting", None, fold_scores=[0.60, 0.99, 0.99, 0.62, 0.83])
    assert lucky.mean > steady.mean
    assert steady.rank_score > lucky.rank_score


def test_the_search_keeps_to_its_deadline_and_says_what_it_tried() -> None:
    """Timed against the trial's own fold time, so a loaded machine does not fail it."""
    rng = np.random.default_rng(0)
    n = 4000
    X = pd.DataFrame({f"x{i}": rng.normal(size=n) for i in range(8)})
    y = pd.Series(np.where(X["x0"] + X["x1"] * X["x2"] + rng.normal(size=n) > 0, "a", "b"))
    started = time.monotonic()
    short = ms.search(problem(X, y, "classification"), started + 1, quiet)
    short_took = time.monotonic() - started
    fold = short.chosen.fit_seconds
    # One fold of the first model always runs (a quick default beats no model); then stop.
    assert short.chosen.note.startswith("scored on 1 of 5 folds"), short.chosen.note
    assert short_took < 1 + 2 * fold + 1
    started = time.monotonic()
    longer = ms.search(problem(X, y, "classification"), started + 1 + 15 * fold, quiet)
    assert len(longer.leaderboard) > len(short.leaderboard) + 2  # more time, more candidates
    assert time.monotonic() - started < 1 + 15 * fold + 2 * fold + 1
    for board in (short.leaderboard, longer.leaderboard):
        ranks = [t.rank_score for t in board]
        assert ranks == sorted(ranks, reverse=True)
        assert all(set(t.entry()) >= {"model", "cv_score", "cv_std", "seconds"} for t in board)


def test_ensemble_selection_blends_models_whose_errors_cancel() -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"x": rng.normal(size=300)})
    y = pd.Series(X["x"] * 10 + 100)
    p = problem(X, y, "regression")
    search = ms.Search(p, time.monotonic() + 60, quiet)
    repeats = search.folds[-1][0] + 1
    truth = np.tile(y.to_numpy(), (repeats, 1))
    errors = rng.normal(scale=3, size=truth.shape)

    def trial(label: str, oof: np.ndarray) -> object:
        made = ms.Trial(label, "boosting", None, fit_seconds=0.01)
        search.score(made, oof, search.folds)
        return made

    high = trial("high", truth + 2 + errors)  # biased up
    low = trial("low", truth - 2 + errors)  # biased down by as much
    noisy = trial("noisy", truth + 3 * errors)
    selected = search.ensemble_selection([high, low, noisy])
    assert {m.label for m, _ in selected} == {"high", "low"}
    blended = ms.blend_outputs(selected)
    assert np.abs(blended - truth).mean() < np.abs(high.oof - truth).mean()
    assert "average of" in ms.blend_label(selected)


def test_a_simpler_model_within_one_standard_error_is_chosen_over_the_best() -> None:
    best = ms.Trial("blend", "blend", None, fold_scores=[0.90, 0.92, 0.88, 0.91, 0.89])
    close_linear = ms.Trial("linear", "linear", None, fold_scores=[0.90, 0.90, 0.89, 0.90, 0.895])
    far_linear = ms.Trial("weak", "linear", None, fold_scores=[0.80, 0.82, 0.81, 0.80, 0.79])
    assert ms.simplest_within_one_error([best, close_linear, far_linear], best) is close_linear
    assert ms.simplest_within_one_error([best, far_linear], best) is best
    # Equally simple and equally close: the classifier with the lower log loss.
    sure = ms.Trial("sure", "linear", None, fold_scores=close_linear.fold_scores, log_loss=0.2)
    unsure = ms.Trial("unsure", "linear", None, fold_scores=close_linear.fold_scores, log_loss=0.6)
    assert ms.simplest_within_one_error([best, unsure, sure], best) is sure


class Broken:
    """An estimator whose fit fails in a way no one planned for."""

    def get_params(self, deep: bool = True) -> dict[str, object]:
        return {}

    def fit(self, X: object, y: object) -> Broken:
        raise KeyError("a column went missing")


def test_a_candidate_that_crashes_is_noted_and_the_search_goes_on() -> None:
    X, y = imbalanced_binary(n=300)
    search = ms.Search(problem(X, y, "classification"), time.monotonic() + 30, quiet)
    search.p.classes = np.array(["no", "yes"])
    assert search.run("broken", "linear", Broken()) is None
    (failed,) = search.trials
    assert failed.note == "failed: 'a column went missing'"
    assert failed.rank_score == -np.inf
