"""TrainBot's side of the quality benchmark: a real job through the real pipeline, in process.

The CSV goes in as `trainbot run --dataset PATH.csv --target COLUMN` gives it (a CLI job may
read local files); the offline template writes the code and the local sandbox runs it. Once
the job is live, the unseen test rows go to the live app's /predict as a user would send
them, and the app is stopped.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pandas as pd

from bench.cases import _settings
from pipeline.budget import timeout_needed
from pipeline.events import EventKind, RecordingSink
from pipeline.service import JobRequest, JobService
from storage import queries
from storage.db import session_scope
from storage.models import TrainingJob
from storage.states import TERMINAL, JobStatus, Stage

if TYPE_CHECKING:
    from pipeline.bootstrap import Services

PREDICT_BATCH = 1000  # the live app's most rows per request (pipeline/codegen/contract.py)
PREDICT_TIMEOUT = 120.0
LIVE_TIMEOUT_SLACK = 300.0  # beyond the budget: data checks, app start, verification


class TrainBotFailed(RuntimeError):
    """The job or its live app did not give predictions; the message says where it stopped."""


@dataclass(frozen=True)
class TrainBotRun:
    predictions: list[Any]
    train_seconds: float  # the job's training stage, from its stored events
    model: str  # metrics.json's "model": what the template chose
    job_id: str


class TrainBotJobs:
    """One in-process pipeline (SQLite in `root`) that runs the benchmark's jobs in turn."""

    def __init__(self, root: Path, *, budget: int) -> None:
        from pipeline.bootstrap import bootstrap

        root.mkdir(parents=True, exist_ok=True)
        settings = _settings(root)
        # Room for the budget asked (--budget up to MAX_BUDGET), as an operator would give it.
        timeout = max(settings.train_timeout, timeout_needed(budget))
        settings = settings.model_copy(update={"train_timeout": timeout})
        self.services: Services = bootstrap(settings, sink=RecordingSink())
        self.jobs = JobService.of(self.services)
        self.services.worker.start()

    def close(self) -> None:
        self.services.worker.shutdown()

    def run(
        self, *, name: str, csv: Path, target: str, task: str, budget: int, test: pd.DataFrame
    ) -> TrainBotRun:
        job = self.jobs.submit(job_request(name, csv, target, task, budget)).job
        try:
            timeout = budget * 3 + LIVE_TIMEOUT_SLACK
            job = self._wait(job.id, until={JobStatus.LIVE, *TERMINAL}, timeout=timeout)
            if job.job_status != JobStatus.LIVE or not job.deployment_url:
                raise TrainBotFailed(f"job {job.short_id} {job.status}: {job.error or 'no reason'}")
            features = test.drop(columns=[target])
            predictions = predict(job.deployment_url, features)
        finally:
            self._stop(job)
        return TrainBotRun(
            predictions=predictions,
            train_seconds=self.train_seconds(job.id),
            model=str((job.metrics or {}).get("model", "?")),
            job_id=job.id,
        )

    def train_seconds(self, job_id: str) -> float:
        """From the training stage's start to the next stage's start, as stored."""
        with session_scope(self.services.engine) as session:
            started = queries.list_events(session, job_id=job_id, kinds=[EventKind.STARTED.value])
        times = [(event.stage, event.at) for event in started]
        for i, (stage, at) in enumerate(times):
            if stage == Stage.TRAIN.value:
                later = [t for s, t in times[i + 1 :] if s != Stage.TRAIN.value]
                if later:
                    return (later[0] - at).total_seconds()
        raise TrainBotFailed(f"job {job_id[:8]} has no finished training stage in its events")

    def _wait(self, job_id: str, *, until: set[JobStatus], timeout: float) -> TrainingJob:
        deadline = time.monotonic() + timeout
        while True:
            with session_scope(self.services.engine) as session:
                job = queries.get_job(session, job_id=job_id)
                assert job is not None
            if job.job_status in until:
                return job
            if time.monotonic() > deadline:
                raise TrainBotFailed(f"job {job.short_id} still {job.status} after {timeout:.0f} s")
            time.sleep(0.1)

    def _stop(self, job: TrainingJob) -> None:
        """Cancels the job or stops its app, and waits until the app no longer answers, so
        the reference that runs next has the cores to itself."""
        with session_scope(self.services.engine) as session:
            fresh = queries.get_job(session, job_id=job.id)
        if fresh is not None and fresh.job_status not in TERMINAL:
            self.jobs.cancel(job.id, by="bench")
        if job.deployment_url:
            _wait_until_gone(job.deployment_url)


def _wait_until_gone(base_url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{base_url}health", timeout=1)
        except httpx.HTTPError:
            return
        time.sleep(0.1)
    raise TrainBotFailed(f"the app at {base_url} still answers {timeout:.0f} s after its stop")


def job_request(name: str, csv: Path, target: str, task: str, budget: int) -> JobRequest:
    """The one place the benchmark says what a job asks for (its training budget too)."""
    return JobRequest(
        name=name,
        dataset_source=str(csv),
        target=target,
        task=task,
        requested_by="bench",
        origin="cli",
        time_budget_seconds=budget,
    )


def predict(base_url: str, features: pd.DataFrame) -> list[Any]:
    """Every row through POST /predict, in batches the app accepts: the CSV's headers as
    keys, missing values as null."""
    rows = [
        {key: _plain(value) for key, value in row.items()}
        for row in features.to_dict(orient="records")
    ]
    predictions: list[Any] = []
    with httpx.Client(base_url=base_url, timeout=PREDICT_TIMEOUT) as client:
        for start in range(0, len(rows), PREDICT_BATCH):
            body = json.dumps({"rows": rows[start : start + PREDICT_BATCH]}, allow_nan=False)
            response = client.post(
                "predict", content=body, headers={"content-type": "application/json"}
            )
            if response.status_code != 200:
                raise TrainBotFailed(
                    f"the live app answered {response.status_code} to rows {start}+: "
                    f"{response.text[:300]}"
                )
            predictions.extend(response.json()["predictions"])
    if len(predictions) != len(rows):
        raise TrainBotFailed(
            f"the live app gave {len(predictions)} predictions for {len(rows)} rows"
        )
    return predictions


def _plain(value: Any) -> Any:
    """A JSON value as a user's client would send it: numpy scalars as numbers, NaN as null."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if pd.isna(value):
        return None
    return value.item() if hasattr(value, "item") else value
