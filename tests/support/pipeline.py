"""Helpers to run real jobs in tests: settings in a tmp dir, scripted code, waiting."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import Engine

from pipeline.bootstrap import Services, bootstrap
from pipeline.budget import MIN_BUDGET, timeout_needed
from pipeline.codegen.base import GeneratedCode, Resource, TaskSpec
from pipeline.codegen.template import TemplateGenerator
from pipeline.events import RecordingSink
from pipeline.service import JobService
from pipeline.settings import Settings
from storage import queries
from storage.db import session_scope
from storage.models import TrainingJob
from storage.states import TERMINAL, JobStatus

SETTLED = frozenset({JobStatus.LIVE, *TERMINAL})


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'unused.db'}",
        "TRAINBOT_DATA_DIR": tmp_path / "data",
        "TRAINBOT_APP_TTL": 300,
        "TRAINBOT_TRAIN_TIMEOUT": 120,
        # The least budget a job may have: jobs here test the pipeline, not the search
        # (tests/integration/test_template_search.py and test_budget_*.py test that).
        "TRAINBOT_TRAIN_BUDGET_SECONDS": MIN_BUDGET,
        "TRAINBOT_APP_START_TIMEOUT": 20,
        # Explicit, so a key in the environment never switches a test to a cloud provider.
        "TRAINBOT_CODEGEN": "template",
        "TRAINBOT_SANDBOX": "local",
    }
    values.update(overrides)
    short_timeout = values["TRAINBOT_TRAIN_TIMEOUT"] < timeout_needed(MIN_BUDGET)
    if short_timeout and "TRAINBOT_TRAIN_BUDGET_SECONDS" not in overrides:
        del values["TRAINBOT_TRAIN_BUDGET_SECONDS"]  # a short timeout brings its own default
    return Settings(**values)


class ScriptedGenerator:
    """A code generator that returns the template's files with some replaced."""

    name = "scripted"
    can_repair = False

    def __init__(self, **replacements: str) -> None:
        self.replacements = {name.replace("_", "."): src for name, src in replacements.items()}
        self.calls: list[TaskSpec] = []

    def generate(self, spec: TaskSpec, resources: list[Resource]) -> GeneratedCode:
        self.calls.append(spec)
        files = dict(TemplateGenerator().generate(spec, resources).files)
        files.update(self.replacements)
        return GeneratedCode(files=files, provider=self.name)


def start_services(
    engine: Engine, settings: Settings, sink: RecordingSink | None = None, **parts: Any
) -> Services:
    services = bootstrap(settings, sink=sink or RecordingSink(), engine=engine, **parts)
    services.worker.start()
    return services


def submit(services: Services, **fields: Any) -> str:
    fields.setdefault("name", "test model")
    fields.setdefault("requested_by", "tester")
    fields.setdefault("ttl_seconds", services.settings.app_ttl)
    with session_scope(services.engine) as session:
        job_id = queries.create_job(session, **fields).id
    services.worker.wake()
    return job_id


def cancel(services: Services, job_id: str) -> None:
    """What /train cancel and `trainbot cancel` do: through the service."""
    JobService.of(services).cancel(job_id, by="tester")


def wait_for(
    services: Services,
    job_id: str,
    statuses: frozenset[JobStatus] | set[JobStatus] = SETTLED,
    timeout: float = 180.0,
) -> TrainingJob:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = get(services, job_id)
        if job.job_status in statuses:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id[:8]} is still {get(services, job_id).status}")


def get(services: Services, job_id: str) -> TrainingJob:
    with session_scope(services.engine) as session:
        job = queries.get_job(session, job_id=job_id)
    assert job is not None
    return job


def event_messages(services: Services, job_id: str, kind: str | None = None) -> list[str]:
    with session_scope(services.engine) as session:
        events = queries.list_events(session, job_id=job_id, kinds=[kind] if kind else None)
    return [e.message for e in events]


def wait_until_down(url: str, timeout: float = 10.0) -> None:
    """A stopped app stops answering (sandboxes are killed in the background)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url.rstrip("/") + "/health", timeout=1)
        except httpx.HTTPError:
            return
        time.sleep(0.1)
    raise AssertionError(f"{url} still answers")
