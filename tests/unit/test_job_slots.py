"""How many jobs one worker runs at once: its sandbox provider's number unless set."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from pipeline.bootstrap import bootstrap, build_sandboxes
from pipeline.events import RecordingSink
from pipeline.sandbox.e2b import HOBBY_CONCURRENT_SANDBOXES, REMOTE_CONCURRENT_JOBS
from pipeline.sandbox.local import usable_cores
from pipeline.settings import Settings
from pipeline.worker import job_slots
from storage.db import make_engine


def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for name in ("E2B_API_KEY", "TRAINBOT_SANDBOX", "TRAINBOT_MAX_CONCURRENT_JOBS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TRAINBOT_DATA_DIR", str(tmp_path / "data"))
    return Settings()


def worker_slots(chosen: Settings) -> int:
    return bootstrap(chosen, sink=RecordingSink(), engine=make_engine("sqlite://")).worker.slots


def test_the_local_sandbox_runs_a_job_a_core(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = settings(tmp_path, monkeypatch, TRAINBOT_SANDBOX="local")
    assert chosen.max_concurrent_jobs is None
    assert worker_slots(chosen) == len(os.sched_getaffinity(0))


def test_e2b_runs_many_more_than_the_plans_sandboxes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = settings(tmp_path, monkeypatch, E2B_API_KEY="e2b_x")
    assert worker_slots(chosen) == REMOTE_CONCURRENT_JOBS
    # The plan's cap across workers stays the queue's business (TRAINBOT_SANDBOX_LIMIT).
    assert build_sandboxes(chosen).concurrent_limit == HOBBY_CONCURRENT_SANDBOXES


@pytest.mark.parametrize("sandbox", ["local", "e2b"])
def test_the_setting_overrides_any_provider(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sandbox: str
) -> None:
    chosen = settings(
        tmp_path,
        monkeypatch,
        TRAINBOT_SANDBOX=sandbox,
        E2B_API_KEY="e2b_x",
        TRAINBOT_MAX_CONCURRENT_JOBS="300",
    )
    assert worker_slots(chosen) == 300
    assert job_slots(3, build_sandboxes(chosen)) == 3


@pytest.mark.parametrize("value", ["0", "1001"])
def test_slots_out_of_range_are_refused_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    with pytest.raises(ValidationError, match="TRAINBOT_MAX_CONCURRENT_JOBS"):
        settings(tmp_path, monkeypatch, TRAINBOT_MAX_CONCURRENT_JOBS=value)


def test_cores_are_what_this_process_may_run_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 2, 5})
    assert usable_cores() == 3
    monkeypatch.delattr(os, "sched_getaffinity")  # not Linux: every core of the machine
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert usable_cores() == 6
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # "None if undetermined"
    assert usable_cores() == 1
