"""Reading what train.py says it tried and learned: good, missing and malformed outputs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from pipeline.training_report import (
    MAX_CANDIDATES,
    MAX_IMPORTANCES,
    MAX_METRICS_BYTES,
    MAX_WARNINGS,
    Candidate,
    Importance,
    clean_importances,
    clean_metrics,
    read_report,
    report_of,
)

CORE = {
    "task": "classification",
    "metric": "balanced_accuracy",
    "score": 0.91,
    "baseline": 0.5,
    "baseline_name": "most frequent class",
    "model": "HistGradientBoostingClassifier",
    "n_train": 300,
    "n_test": 100,
}
GOOD = {
    **CORE,
    "cv_metric": "balanced_accuracy",
    "cv_score": 0.9,
    "leaderboard": [
        {"model": "HistGradientBoostingClassifier", "cv_score": 0.9, "cv_std": 0.02, "seconds": 4},
        {"model": "LogisticRegression", "cv_score": 0.85, "cv_std": 0.03, "seconds": 1.5},
        {"model": "SVC", "cv_score": None, "cv_std": None, "seconds": 30, "note": "timed out"},
    ],
    "warnings": ["the test score is far below cross-validation"],
    "budget_seconds": 60,
    "seconds": 57.5,
    "threshold": 0.35,
}
IMPORTANCES = [
    {"name": "calls", "importance": 0.21, "std": 0.02},
    {"name": "plan", "importance": 0.08, "std": 0.01},
    {"name": "region", "importance": -0.004, "std": 0.003},
]


def test_a_full_report_is_read_as_written() -> None:
    report = read_report(GOOD, IMPORTANCES)
    assert report.model == "HistGradientBoostingClassifier"
    assert (report.cv_metric, report.cv_score) == ("balanced_accuracy", 0.9)
    assert report.candidates[0] == Candidate("HistGradientBoostingClassifier", 0.9, 0.02, 4.0)
    assert report.candidates[2] == Candidate("SVC", None, None, 30.0, "timed out")
    assert report.is_chosen(report.candidates[0]) and not report.is_chosen(report.candidates[1])
    assert report.warnings == ("the test score is far below cross-validation",)
    assert [i.name for i in report.importances] == ["calls", "plan", "region"]
    assert (report.budget_seconds, report.seconds, report.threshold) == (60.0, 57.5, 0.35)
    assert not report.empty


def test_outputs_without_the_optional_keys_give_an_empty_report() -> None:
    report = read_report(CORE)
    assert report.empty
    assert report.candidates == () and report.importances == () and report.warnings == ()
    assert report.cv_metric is None and report.threshold is None
    assert clean_metrics(CORE) == CORE  # nothing added, nothing lost
    assert clean_importances({"features": []}) == []


@pytest.mark.parametrize(
    "entry",
    [
        "HistGradientBoosting",  # not an object
        {"cv_score": 0.9},  # no model
        {"model": "", "cv_score": 0.9},
        {"model": 3, "cv_score": 0.9},
        {"model": "A", "cv_score": "0.9"},  # a score that is not a number
        {"model": "A", "cv_score": float("nan")},
        {"model": "A", "cv_score": True},
    ],
)
def test_a_malformed_leaderboard_entry_is_dropped(entry: Any) -> None:
    metrics = {**CORE, "leaderboard": [entry, {"model": "B", "cv_score": 0.8, "seconds": 1}]}
    assert [c.model for c in read_report(metrics).candidates] == ["B"]
    assert clean_metrics(metrics)["leaderboard"] == [
        {"model": "B", "cv_score": 0.8, "cv_std": None, "seconds": 1.0}
    ]


def test_bad_optional_fields_of_an_entry_become_unknown() -> None:
    entry = {"model": "A", "cv_score": 0.8, "cv_std": -1, "seconds": "fast", "note": ["x"]}
    [candidate] = read_report({**CORE, "leaderboard": [entry]}).candidates
    assert candidate == Candidate("A", 0.8, None, None, "")


@pytest.mark.parametrize("value", [None, "a list", 42, {"model": "A"}, [None, 3]])
def test_a_leaderboard_that_is_not_a_list_of_objects_is_left_out(value: Any) -> None:
    cleaned = clean_metrics({**CORE, "leaderboard": value})
    assert "leaderboard" not in cleaned
    assert cleaned == CORE


def test_lists_and_texts_are_capped() -> None:
    metrics = {
        **CORE,
        "model": "M" * 500,
        "leaderboard": [{"model": f"m{i}", "cv_score": 0.5, "seconds": 1} for i in range(50)],
        "warnings": [f"warning {i} " + "x" * 1000 for i in range(20)],
    }
    cleaned = clean_metrics(metrics)
    assert len(cleaned["leaderboard"]) == MAX_CANDIDATES
    assert len(cleaned["warnings"]) == MAX_WARNINGS
    assert all(len(w) <= 300 for w in cleaned["warnings"])
    report = read_report(metrics, [{"name": f"f{i}", "importance": i} for i in range(500)])
    assert len(report.importances) == MAX_IMPORTANCES
    assert len(report.model) <= 200


def test_warnings_are_plain_distinct_sentences() -> None:
    metrics = {**CORE, "warnings": ["  two\n lines ", "two lines", "", 7, None, "other"]}
    assert clean_metrics(metrics)["warnings"] == ["two lines", "other"]
    assert clean_metrics({**CORE, "warnings": "one sentence"})["warnings"] == ["one sentence"]
    assert "warnings" not in clean_metrics({**CORE, "warnings": {"a": 1}})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("cv_score", "high"),
        ("cv_score", float("inf")),
        ("cv_metric", 5),
        ("budget_seconds", -1),
        ("seconds", "57"),
        ("threshold", 1.5),
        ("threshold", False),
    ],
)
def test_a_malformed_scalar_is_left_out(key: str, value: Any) -> None:
    cleaned = clean_metrics({**GOOD, key: value})
    assert key not in cleaned
    assert cleaned["leaderboard"] and cleaned["score"] == GOOD["score"]


def test_importances_are_validated_sorted_and_named_once() -> None:
    schema = {
        "importances": [
            {"name": "plan", "importance": 0.08, "std": 0.01},
            {"name": "calls", "importance": 0.21, "std": -3},  # a negative spread is unknown
            {"name": "calls", "importance": 0.5},  # the same feature again
            {"name": "age", "importance": "big"},
            {"importance": 0.9},
            "region",
        ]
    }
    assert clean_importances(schema) == [
        {"name": "calls", "importance": 0.21, "std": None},
        {"name": "plan", "importance": 0.08, "std": 0.01},
    ]
    assert read_report(CORE, schema["importances"]).importances[0] == Importance(
        "calls", 0.21, None
    )
    assert clean_importances({"importances": {"calls": 0.2}}) == []


def test_unknown_keys_go_before_the_stored_metrics_grow_too_big() -> None:
    metrics = {**GOOD, "extra": {"small": 1}, "dump": ["x" * 1000] * 100}
    cleaned = clean_metrics(metrics)
    assert "dump" not in cleaned and cleaned["extra"] == {"small": 1}
    assert len(json.dumps(cleaned)) <= MAX_METRICS_BYTES
    assert cleaned["leaderboard"] == clean_metrics(GOOD)["leaderboard"]


@dataclass
class FakeEvent:
    kind: str
    stage: str
    data: dict[str, Any] = field(default_factory=dict)


def test_the_report_of_a_job_is_its_latest_trainings() -> None:
    first = {**GOOD, "model": "LogisticRegression"}
    events = [
        FakeEvent("progress", "train", {"time_budget_seconds": 60}),
        FakeEvent("progress", "train", {"metrics": first, "importances": IMPORTANCES}),
        FakeEvent("progress", "deploy", {"metrics": CORE}),  # another stage's event
        FakeEvent("progress", "train", {"metrics": GOOD, "importances": IMPORTANCES}),
        FakeEvent("warning", "train", {"metrics": first}),
    ]
    report = report_of(events)
    assert report is not None and report.model == GOOD["model"]
    assert report_of(events[:1]) is None
    assert report_of([FakeEvent("progress", "train", {"metrics": CORE})]) is None  # nothing new
    assert report_of([FakeEvent("progress", "train", {"metrics": "junk"})]) is None
