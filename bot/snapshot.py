"""What the Slack surface shows about a job: a plain, immutable picture built from storage."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

STAGES: tuple[tuple[str, str], ...] = (
    ("resources", "Reference resources"),
    ("dataset", "Data set"),
    ("codegen", "Code generation"),
    ("train", "Training"),
    ("deploy", "Live app"),
)


@dataclass(frozen=True)
class JobSnapshot:
    job_id: str
    short_id: str
    model_name: str
    status: str  # storage.states.JobStatus value
    stage: str | None  # current stage, or the one it stopped in
    requested_by: str  # Slack user id (or "cli")
    dataset: str  # human description of the source, e.g. "iris (built-in)"
    target: str | None
    task: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    now: datetime  # when the picture was taken; elapsed time is measured against it
    stage_states: dict[str, str] = field(default_factory=dict)  # pending|running|done|failed
    note: str = ""  # the latest progress message
    metrics: dict[str, Any] | None = None
    url: str | None = None
    error: str | None = None
    expires_at: datetime | None = None
    warnings: int = 0
    attempt: int = 1

    @property
    def elapsed_seconds(self) -> int:
        if self.started_at is None:
            return 0
        return max(0, int(((self.finished_at or self.now) - self.started_at).total_seconds()))
