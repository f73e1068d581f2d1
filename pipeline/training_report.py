"""What training tried and learned, read from what train.py wrote. Pure functions.

metrics.json may carry a leaderboard of the candidates it tried, warnings, the
cross-validation metric and score, the time budget and the time spent; schema.json may
carry permutation importances (pipeline/codegen/contract.py). All of it is optional, and
code an LLM wrote may get it wrong: each value is kept only when it has the contract's
shape, a bad entry is dropped rather than failing the job, and every list and text is
capped so a runaway script cannot bloat the job row, its events or a Slack message.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

MAX_CANDIDATES = 20  # leaderboard entries kept (the contract's own cap)
MAX_IMPORTANCES = 20
MAX_WARNINGS = 5
MAX_MODEL_NAME = 200  # searches name blends and their settings at length
MAX_FEATURE_NAME = 120
MAX_NOTE = 160
MAX_WARNING = 300
MAX_METRIC_NAME = 40
# metrics.json beyond the keys we know (e.g. "extra") is kept only while the whole stays
# this small: it is stored on the job row and repeated in two of its events.
MAX_METRICS_BYTES = 20_000

REPORT_KEYS = (
    "cv_metric",
    "cv_score",
    "leaderboard",
    "warnings",
    "budget_seconds",
    "seconds",
    "threshold",
)
CORE_KEYS = ("task", "metric", "score", "baseline", "baseline_name", "model", "n_train", "n_test")


@dataclass(frozen=True)
class Candidate:
    """One model the search tried: its mean and spread of cross-validation scores."""

    model: str
    cv_score: float | None  # None: the candidate failed or ran out of time
    cv_std: float | None
    seconds: float | None
    note: str = ""


@dataclass(frozen=True)
class Importance:
    """How much the test metric drops when one feature's values are shuffled."""

    name: str
    importance: float
    std: float | None


@dataclass(frozen=True)
class TrainingReport:
    model: str  # the chosen model, as metrics["model"] names it ("" when not said)
    metric: str  # the test metric
    cv_metric: str | None
    cv_score: float | None
    candidates: tuple[Candidate, ...]
    warnings: tuple[str, ...]
    importances: tuple[Importance, ...]
    budget_seconds: float | None
    seconds: float | None
    threshold: float | None

    @property
    def empty(self) -> bool:
        """Nothing to show beyond the test score the job already reports."""
        return not self.candidates and not self.importances

    def is_chosen(self, candidate: Candidate) -> bool:
        return bool(self.model) and candidate.model == self.model


class EventLike(Protocol):
    kind: str
    stage: str
    data: dict[str, Any]


# -- reading ----------------------------------------------------------------------------------


def read_report(metrics: Any, importances: Any = None) -> TrainingReport:
    """The report in `metrics` (metrics.json or its cleaned form) and `importances`
    (schema.json's "importances"); anything malformed is left out."""
    m = metrics if isinstance(metrics, Mapping) else {}
    return TrainingReport(
        model=_text(m.get("model"), MAX_MODEL_NAME) or "",
        metric=_text(m.get("metric"), MAX_METRIC_NAME) or "",
        cv_metric=_text(m.get("cv_metric"), MAX_METRIC_NAME),
        cv_score=_number(m.get("cv_score")),
        candidates=tuple(leaderboard_of(m.get("leaderboard"))),
        warnings=tuple(warnings_of(m.get("warnings"))),
        importances=tuple(importances_of(importances)),
        budget_seconds=_number(m.get("budget_seconds"), least=0),
        seconds=_number(m.get("seconds"), least=0),
        threshold=_number(m.get("threshold"), least=0, most=1),
    )


def leaderboard_of(value: Any) -> list[Candidate]:
    """The valid entries of a leaderboard, in the order given (best first), at most 20."""
    found: list[Candidate] = []
    for entry in value if isinstance(value, list) else []:
        if len(found) == MAX_CANDIDATES:
            break
        if not isinstance(entry, Mapping):
            continue
        model = _text(entry.get("model"), MAX_MODEL_NAME)
        score = entry.get("cv_score")
        if model is None or (score is not None and _number(score) is None):
            continue  # no name, or a score that is not a number: nothing true to show
        found.append(
            Candidate(
                model=model,
                cv_score=_number(score),
                cv_std=_number(entry.get("cv_std"), least=0),
                seconds=_number(entry.get("seconds"), least=0),
                note=_text(entry.get("note"), MAX_NOTE) or "",
            )
        )
    return found


def warnings_of(value: Any) -> list[str]:
    """Plain sentences, each once, at most MAX_WARNINGS; a lone string counts as one."""
    items = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    found: list[str] = []
    for item in items:
        text = _text(item, MAX_WARNING)
        if text and text not in found:
            found.append(text)
        if len(found) == MAX_WARNINGS:
            break
    return found


def importances_of(value: Any) -> list[Importance]:
    """Valid importances, largest first, each feature once, at most MAX_IMPORTANCES."""
    found: dict[str, Importance] = {}
    for entry in value if isinstance(value, list) else []:
        if not isinstance(entry, Mapping):
            continue
        name = _text(entry.get("name"), MAX_FEATURE_NAME)
        importance = _number(entry.get("importance"))
        if name is None or importance is None or name in found:
            continue
        found[name] = Importance(name, importance, _number(entry.get("std"), least=0))
        if len(found) == 4 * MAX_IMPORTANCES:
            break  # a runaway list: the largest of what was read is enough
    ranked = sorted(found.values(), key=lambda item: -item.importance)
    return ranked[:MAX_IMPORTANCES]


def report_of(events: Iterable[EventLike]) -> TrainingReport | None:
    """The report of the last training in `events` (a job's events in order), or None."""
    latest: EventLike | None = None
    for event in events:
        if event.kind == "progress" and event.stage == "train" and "metrics" in event.data:
            latest = event
    if latest is None:
        return None
    report = read_report(latest.data.get("metrics"), latest.data.get("importances"))
    return None if report.empty else report


# -- cleaning what train.py wrote, before it is stored ----------------------------------------


def clean_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """metrics.json as it is stored and shown: the report's keys in their valid form (a
    malformed one left out), other keys as written while the whole stays small."""
    cleaned = {key: value for key, value in metrics.items() if key not in REPORT_KEYS}
    report = read_report(metrics)
    fields: dict[str, Any] = {
        "cv_metric": report.cv_metric,
        "cv_score": report.cv_score,
        "leaderboard": [_candidate_json(c) for c in report.candidates] or None,
        "warnings": list(report.warnings) or None,
        "budget_seconds": report.budget_seconds,
        "seconds": report.seconds,
        "threshold": report.threshold,
    }
    cleaned.update({key: value for key, value in fields.items() if value is not None})
    return _within_size(cleaned)


def clean_importances(schema: Mapping[str, Any]) -> list[dict[str, Any]]:
    """schema.json's importances in their valid form, largest first ([] when none)."""
    return [
        {"name": item.name, "importance": item.importance, "std": item.std}
        for item in importances_of(schema.get("importances"))
    ]


def _candidate_json(candidate: Candidate) -> dict[str, Any]:
    data: dict[str, Any] = {
        "model": candidate.model,
        "cv_score": candidate.cv_score,
        "cv_std": candidate.cv_std,
        "seconds": candidate.seconds,
    }
    if candidate.note:
        data["note"] = candidate.note
    return data


def _within_size(metrics: dict[str, Any]) -> dict[str, Any]:
    """Drops the largest keys we do not know until the whole fits MAX_METRICS_BYTES."""
    sizes = {key: _json_size(value) for key, value in metrics.items()}
    total = sum(sizes.values())
    known = set(CORE_KEYS) | set(REPORT_KEYS)
    for key in sorted(sizes, key=lambda k: -sizes[k]):
        if total <= MAX_METRICS_BYTES:
            break
        if key not in known:
            total -= sizes[key]
            del metrics[key]
    if total > MAX_METRICS_BYTES:  # a known key holds a novel, e.g. "model"
        for key, value in metrics.items():
            if isinstance(value, str):
                metrics[key] = _text(value, MAX_MODEL_NAME) or ""
    return metrics


def _json_size(value: Any) -> int:
    try:
        return len(json.dumps(value, default=str))
    except (TypeError, ValueError):  # circular or otherwise unwritable: the store would fail
        return MAX_METRICS_BYTES + 1


def _number(value: Any, *, least: float | None = None, most: float | None = None) -> float | None:
    """A finite JSON number within [least, most], else None (booleans are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    if not math.isfinite(number):
        return None
    if (least is not None and number < least) or (most is not None and number > most):
        return None
    return number


def _text(value: Any, limit: int) -> str | None:
    """A non-empty string on one line, cut to `limit` characters, else None."""
    if not isinstance(value, str):
        return None
    text = " ".join(value.split())
    if not text:
        return None
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
