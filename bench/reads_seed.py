"""A database at size for bench/reads.py: finished jobs in several workspaces, each with the
events a real run leaves, written in bulk (core executemany: seconds, not the service's
minutes). One person and one channel of one workspace have many jobs, so a read that
scans instead of seeking shows.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert
from sqlalchemy.engine import Engine

from storage.models import SHORT_ID_LENGTH, AiModel, JobEvent, TrainingJob, new_id

TEAMS = 5
CHANNELS_PER_TEAM = 20
USERS_PER_TEAM = 50
MAIN_SHARE = 0.6  # of every job, in the workspace whose reads are timed
USER_JOBS = 500  # of the person whose reads are timed (at 10,000 jobs)
CHANNEL_SHARE = 0.1  # of every job, in the channel whose list is timed
BATCH = 2_000
STAGES = ("resources", "dataset", "codegen", "train", "deploy")


@dataclass(frozen=True)
class Seeded:
    """Whose reads are timed, and a job of theirs to ask about by short id."""

    team_id: str
    user_id: str
    channel_id: str
    job_ref: str
    jobs: int
    events: int


def seed_jobs(engine: Engine, *, jobs: int, seed: int = 11) -> Seeded:
    rng = random.Random(seed)
    main, user, channel = "T0MAIN", "U0TIMED", "C0TIMED"
    user_jobs = max(10, jobs * USER_JOBS // 10_000)
    channel_jobs = max(10, int(jobs * CHANNEL_SHARE))
    now = datetime.now(UTC)
    models: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    ref = ""
    for n in range(jobs):
        team = main if rng.random() < MAIN_SHARE else f"T{rng.randrange(1, TEAMS)}OTHER"
        who = f"U{team[:2]}{rng.randrange(USERS_PER_TEAM):03d}"
        where = f"C{team[:2]}{rng.randrange(CHANNELS_PER_TEAM):03d}"
        if n < user_jobs:  # the timed person: most of their jobs in the timed workspace
            team = main if n % 10 else "T1OTHER"
            who = user
            where = channel if n % 2 else f"C{team[:2]}{rng.randrange(CHANNELS_PER_TEAM):03d}"
        elif n < user_jobs + channel_jobs:
            team, where = main, channel
        created = now - timedelta(days=90 * rng.random(), seconds=n % 60)
        model_id, job_id = new_id(), new_id()
        if who == user and team == main and not ref:
            ref = job_id[:SHORT_ID_LENGTH]
        models.append(_model(model_id, n, who, where, team, created))
        job, job_events = _finished_job(rng, job_id, model_id, who, where, team, created)
        rows.append(job)
        events.extend(job_events)
    with engine.begin() as conn:
        for table, values in (
            (AiModel, models),
            (TrainingJob, rows),
            (JobEvent, events),
        ):
            for start in range(0, len(values), BATCH):
                conn.execute(insert(table), values[start : start + BATCH])
    return Seeded(main, user, channel, ref, jobs=jobs, events=len(events))


def _model(
    model_id: str, n: int, who: str, where: str, team: str, created: datetime
) -> dict[str, Any]:
    return {
        "id": model_id,
        "name": f"model {n}",
        "goal": "predict the label",
        "task_type": "classification",
        "dataset_source": "iris",
        "target_column": "species",
        "created_by": who,
        "channel_id": where,
        "team_id": team,
        "enterprise_id": None,
        "deployed_url": None,
        "created_at": created,
        "updated_at": created,
    }


def _finished_job(
    rng: random.Random,
    job_id: str,
    model_id: str,
    who: str,
    where: str,
    team: str,
    created: datetime,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A job that ran and ended: its app expired (most), it failed, or it was cancelled;
    with its events in order (15 to 30: stages, progress, output lines, the end)."""
    roll = rng.random()
    status = "expired" if roll < 0.7 else "failed" if roll < 0.85 else "cancelled"
    reached = len(STAGES) if status == "expired" else rng.randrange(1, len(STAGES) + 1)
    at = created + timedelta(seconds=rng.uniform(0.05, 2))
    started = at
    events = [_event(job_id, created, "queued", "job", "queued", {})]
    metrics = {"accuracy": round(rng.uniform(0.7, 0.99), 3), "cv_metric": "accuracy"}
    for i, stage in enumerate(STAGES[:reached]):
        at += timedelta(seconds=rng.uniform(0.5, 5))
        events.append(_event(job_id, at, "started", stage, f"{stage} started", {}))
        for p in range(rng.randrange(1, 4)):
            at += timedelta(seconds=rng.uniform(0.2, 3))
            data: dict[str, Any] = {}
            if stage == "train" and p == 0:
                data = {"time_budget_seconds": 60}
            events.append(_event(job_id, at, "progress", stage, f"{stage}: step {p}", data))
        for line in range(rng.randrange(0, 6) if stage in ("train", "deploy") else 0):
            at += timedelta(seconds=0.1)
            events.append(_event(job_id, at, "log", stage, f"output line {line}", {}))
        if rng.random() < 0.05:
            events.append(_event(job_id, at, "warning", stage, "a column was dropped", {}))
        last = i == reached - 1
        if last and status == "failed":
            events.append(_event(job_id, at, "failed", stage, "the stage failed", {}))
        elif not (last and status == "cancelled"):
            events.append(_event(job_id, at, "finished", stage, f"{stage} done", {}))
        if stage == "train" and status == "expired":
            events.append(_event(job_id, at, "progress", "train", "trained", {"metrics": metrics}))
    finished = at + timedelta(seconds=1)
    live = finished if status == "expired" else None
    ended = (live + timedelta(hours=1)) if live else finished
    events.append(_event(job_id, ended, "finished", "job", status, {"status": status}))
    job = {
        "id": job_id,
        "model_id": model_id,
        "status": status,
        "stage": STAGES[reached - 1],
        "attempt": 1,
        "retry_of": None,
        "dataset_source": "iris",
        "target_column": "species",
        "task_type": "classification",
        "goal": "predict the label",
        "resources": [],
        "requested_by": who,
        "channel_id": where,
        "team_id": team,
        "enterprise_id": None,
        "worker_id": None,
        "lease_expires_at": None,
        "runs": 1,
        "expiry_notice_at": live + timedelta(minutes=55) if live else None,
        "wait_reason": None,
        "origin": "slack",
        "request_key": new_id(),
        "card_channel_id": where,
        "card_ts": f"{created.timestamp():.6f}",
        "ttl_seconds": 3600,
        "time_budget_seconds": 60,
        "codegen_provider": "template",
        "sandbox_provider": "local",
        "sandbox_id": f"local-{job_id[:12]}",
        "deployment_url": f"https://apps.example.com/{job_id[:12]}" if live else None,
        "error": "training failed: the target has one class" if status == "failed" else None,
        "metrics": metrics if status == "expired" else None,
        "artifacts": {"model": "model.joblib"} if status == "expired" else None,
        "stage_timings": {s: 1.5 for s in STAGES[:reached]},
        "created_at": created,
        "started_at": started,
        "finished_at": finished,
        "live_at": live,
        "expires_at": ended if live else None,
        "updated_at": ended,
    }
    return job, events


def _event(
    job_id: str, at: datetime, kind: str, stage: str, message: str, data: dict[str, Any]
) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "at": at,
        "kind": kind,
        "stage": stage,
        "message": message,
        "data": data,
    }
