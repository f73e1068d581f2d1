"""The template train.py's search, run for real on small data made here: what it tried, what
it learned, the budget it was given, and the warnings it writes."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

from pipeline.codegen.contract import METRICS_FILE, SCHEMA_FILE, TASK_FILE
from tests.support.template_runner import live_app, prepare_workdir, read_json, train_ok

TEMPLATES = Path(__file__).resolve().parents[2] / "pipeline" / "codegen" / "templates"


def signal_and_noise(n: int = 800, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "signal": rng.normal(size=n),
            "colour": rng.choice(["red", "green", "blue"], size=n),
            "noise": rng.normal(size=n),
        }
    )
    frame["label"] = np.where(frame["signal"] + rng.normal(scale=0.3, size=n) > 0, "up", "down")
    return frame


def with_budget(workdir: Path, seconds: float) -> None:
    task = json.loads((workdir / TASK_FILE).read_text())
    (workdir / TASK_FILE).write_text(json.dumps(task | {"time_budget_seconds": seconds}))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("signal")
    prepare_workdir(workdir, signal_and_noise(), target="label", task="classification")
    with_budget(workdir, 20)
    train_ok(workdir)
    return workdir


def test_metrics_hold_the_leaderboard_best_first_and_the_chosen_model(
    trained: Path,
) -> None:
    metrics = read_json(trained / METRICS_FILE)
    board = metrics["leaderboard"]
    assert 3 <= len(board) <= 20
    assert {"model", "cv_score", "cv_std", "seconds"} <= set(board[0])
    (chosen,) = [row for row in board if row["model"] == metrics["model"]]
    scored = [row for row in board if row["cv_score"] is not None]
    families = {row["model"].split("(")[0] for row in scored}
    assert {"HistGradientBoosting", "LogisticRegression"} <= families
    assert metrics["cv_metric"] == "balanced_accuracy"
    assert metrics["cv_score"] == chosen["cv_score"]
    # The best, or a simpler one within a standard error of it (the one-standard-error rule).
    best = board[0]
    assert chosen["cv_score"] >= best["cv_score"] - best["cv_std"]
    assert metrics["budget_seconds"] == 20
    assert 0 < metrics["seconds"] <= 20 + 5
    assert metrics["warnings"] == []
    assert 0.0 < metrics["threshold"] < 1.0  # binary: the tuned cut is recorded


def test_schema_ranks_features_by_permutation_importance_on_the_test_split(
    trained: Path,
) -> None:
    schema = read_json(trained / SCHEMA_FILE)
    importances = schema["importances"]
    assert [row["name"] for row in importances][0] == "signal"
    assert {row["name"] for row in importances} == {"signal", "colour", "noise"}
    by_name = {row["name"]: row for row in importances}
    assert by_name["signal"]["importance"] > 0.2  # shuffling it costs most of the score
    assert abs(by_name["noise"]["importance"]) < 0.05
    values = [row["importance"] for row in importances]
    assert values == sorted(values, reverse=True)
    assert schema["metrics"] == read_json(trained / METRICS_FILE)


def test_the_tuned_threshold_is_what_the_live_app_applies(trained: Path) -> None:
    threshold = read_json(trained / METRICS_FILE)["threshold"]
    with live_app(trained) as app:
        rows = [{"signal": s, "colour": "red", "noise": 0.0} for s in np.linspace(-2, 2, 41)]
        body = app.predict(rows).json()
    for prediction, probabilities in zip(body["predictions"], body["probabilities"], strict=True):
        assert prediction == ("up" if probabilities["up"] >= threshold else "down")


def test_a_small_budget_still_writes_a_working_model(tmp_path: Path) -> None:
    frame = signal_and_noise(n=3000)
    prepare_workdir(tmp_path, frame, target="label", task="classification")
    with_budget(tmp_path, 2)
    train_ok(tmp_path)
    metrics = read_json(tmp_path / METRICS_FILE)
    assert metrics["budget_seconds"] == 2
    assert len(metrics["leaderboard"]) < 6  # no time for the whole queue
    assert metrics["score"] > 0.8
    with live_app(tmp_path) as app:
        assert app.predict([{"signal": 1.5, "colour": "red", "noise": 0}]).json()[
            "predictions"
        ] == ["up"]


def load_train_script() -> ModuleType:
    """train.py as a module (it imports model_search from beside it, as in the sandbox)."""
    sys.path.insert(0, str(TEMPLATES))
    try:
        spec = importlib.util.spec_from_file_location("template_train", TEMPLATES / "train.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["template_train"] = module
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(TEMPLATES))


def test_a_test_score_far_below_cross_validation_is_a_warning() -> None:
    train = load_train_script()
    search = sys.modules["model_search"]
    chosen = search.Trial("m", "linear", None, fold_scores=[0.90, 0.91, 0.89])
    result = search.SearchResult(chosen, [chosen], None, "r2")
    metrics = {"metric": "r2", "score": 0.55, "baseline": 0.0, "baseline_name": "mean", "extra": {}}
    (warning,) = train.score_warnings(metrics, result)
    assert "test r2 0.550 is far below cross-validation's 0.900" in warning
    assert train.score_warnings(metrics | {"score": 0.87}, result) == []
    # Classification compares like with like: the test balanced accuracy with the CV one.
    result.cv_metric = "balanced_accuracy"
    metrics = {
        "metric": "accuracy",
        "score": 0.95,
        "baseline": 0.5,
        "baseline_name": "always the most frequent class",
        "extra": {"balanced_accuracy": 0.70},
    }
    (warning,) = train.score_warnings(metrics, result)
    assert "balanced_accuracy 0.700" in warning
