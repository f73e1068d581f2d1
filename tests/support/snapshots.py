"""A factory for consistent JobSnapshots: stage and stage states follow the status unless given."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bot.snapshot import STAGES, JobSnapshot
from storage.states import STATUS_STAGE, JobStatus

NOW = datetime(2025, 3, 14, 12, 0, 0, tzinfo=UTC)
STAGE_KEYS = [key for key, _ in STAGES]

LIVE_METRICS = {
    "task": "classification",
    "metric": "accuracy",
    "score": 0.9667,
    "baseline": 0.3333,
    "baseline_name": "most frequent class",
    "model": "RandomForestClassifier",
    "n_train": 117,
    "n_test": 30,
    "extra": {},
}


def _stage_for(status: str) -> str | None:
    running = STATUS_STAGE.get(JobStatus(status))
    if running is not None:
        return running.value
    if status in (JobStatus.LIVE, JobStatus.EXPIRED):
        return "deploy"
    if status == JobStatus.FAILED:
        return "train"
    return None


def _states_for(status: str, stage: str | None) -> dict[str, str]:
    if status in (JobStatus.LIVE, JobStatus.EXPIRED):
        return dict.fromkeys(STAGE_KEYS, "done")
    if stage is None:
        return {}
    here = STAGE_KEYS.index(stage)
    states = dict.fromkeys(STAGE_KEYS[:here], "done")
    if status == JobStatus.FAILED:
        states[stage] = "failed"
    elif status != JobStatus.CANCELLED:
        states[stage] = "running"
    return states


def make_snapshot(**overrides: Any) -> JobSnapshot:
    status = str(overrides.pop("status", JobStatus.TRAINING))
    stage = overrides.pop("stage", _stage_for(status))
    queued = status == JobStatus.QUEUED
    live = status == JobStatus.LIVE
    values: dict[str, Any] = {
        "job_id": "0123456789abcdef0123456789abcdef",
        "short_id": "01234567",
        "model_name": "iris-demo",
        "status": status,
        "stage": stage,
        "requested_by": "U0123ABCD",
        "dataset": "iris (built-in)",
        "target": "species",
        "task": "classification",
        "created_at": NOW - timedelta(minutes=3),
        "started_at": None if queued else NOW - timedelta(seconds=65),
        "finished_at": None,
        "now": NOW,
        "stage_states": _states_for(status, stage),
        "note": "" if queued else "working on it",
        "metrics": LIVE_METRICS if status in (JobStatus.LIVE, JobStatus.EXPIRED) else None,
        "url": "https://apps.example.com/j/01234567/" if live else None,
        "error": "training crashed: ValueError" if status == JobStatus.FAILED else None,
        "expires_at": NOW + timedelta(hours=1) if live else None,
    }
    values.update(overrides)
    return JobSnapshot(**values)
