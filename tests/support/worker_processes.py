"""Real worker processes against one PostgreSQL database, and what tests read from them.

Each worker is `python -m tests.support.worker_entry` (the real JobWorker, as `trainbot worker`
runs it, with the stand-in sandbox and generator of worker_standins.py), killable with SIGKILL
and SIGTERM. All of them share one sandbox root, whose journal says which worker ran which
job's training when, and which sandboxes were killed by whom.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import Engine

from storage import queries
from storage.db import make_engine, session_scope, upgrade
from storage.models import JobEvent, TrainingJob
from storage.states import TERMINAL, JobStatus
from tests.fakes.slack_api import FakeSlack
from tests.support.databases import fresh_postgres_database
from tests.support.slack_payloads import SIGNING_SECRET, SlackSender
from tests.support.worker_standins import group_alive, kill_groups, write_dataset

REPO = Path(__file__).resolve().parents[2]
SETTLED = frozenset({JobStatus.LIVE, *TERMINAL})
# Short leases so a dead worker's job moves within seconds; no per-person or per-workspace
# limit unless a test sets one (every job here is one person's).
DEFAULT_ENV = {
    "TRAINBOT_LEASE_SECONDS": "3",
    "TRAINBOT_POLL_SECONDS": "0.5",
    "TRAINBOT_DRAIN_SECONDS": "3",
    "TRAINBOT_MAX_CONCURRENT_JOBS": "2",
    "TRAINBOT_MAX_JOBS_PER_WORKSPACE": "0",
    "TRAINBOT_MAX_JOBS_PER_USER": "0",
    "TRAINBOT_ALLOW_UNISOLATED_CODE": "1",
    "TRAINBOT_CODEGEN": "template",  # never a cloud provider from the environment
    "TRAINBOT_SANDBOX": "local",  # replaced by the stand-in in worker_entry
    "TRAINBOT_APP_TTL": "600",
    "TRAINBOT_TRAIN_TIMEOUT": "120",
    "TRAINBOT_APP_START_TIMEOUT": "20",
}


@dataclass
class WorkerProcess:
    proc: subprocess.Popen[str]
    id: str = ""
    lines: list[str] = field(default_factory=list)
    printed_at: dict[str, float] = field(default_factory=dict)  # line -> time.monotonic()

    def log(self) -> str:
        return "\n".join(self.lines)

    def sigkill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def sigterm(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)


@dataclass
class WebProcess:
    process: WorkerProcess  # its id stays empty: a web process claims nothing
    base: str

    @property
    def sender(self) -> SlackSender:
        return SlackSender(self.base)


@dataclass(frozen=True)
class Run:
    """One training command, from the journal: who ran it, and when it started and ended
    (its own end, or the moment it was stopped or killed; None while it runs)."""

    job: str
    worker: str
    sandbox: str
    pgid: int
    start: float
    end: float | None
    ended_by: str  # "run-end", "stop", "kill" or "" (still running)


class Fleet:
    def __init__(self, database_url: str, root: Path, env: dict[str, str]) -> None:
        self.database_url = database_url
        self.root = root
        self.sandboxes = root / "sandboxes"
        self.sandboxes.mkdir(parents=True, exist_ok=True)
        self.journal = self.sandboxes / "journal.jsonl"
        self.env = env
        self.engine: Engine = make_engine(database_url)
        upgrade(self.engine)
        self.dataset = write_dataset(root / "data.csv")
        self.workers: list[WorkerProcess] = []
        self.webs: list[WebProcess] = []

    # -- processes -----------------------------------------------------------------------

    def _environment(self, number: int, kind: str, **env: str) -> dict[str, str]:
        environment = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("TRAINBOT_", "STANDIN_", "SLACK_"))
        }
        environment.pop("DATABASE_URL", None)
        return (
            environment
            | DEFAULT_ENV
            | self.env
            | env
            | {
                "PYTHONPATH": str(REPO),
                "DATABASE_URL": self.database_url,
                "TRAINBOT_DATA_DIR": str(self.root / f"{kind}-{number}"),
                "STANDIN_ROOT": str(self.sandboxes),
            }
        )

    def start_worker(self, wait: bool = True, **env: str) -> WorkerProcess:
        environment = self._environment(len(self.workers), "worker", **env)
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.worker_entry"],
            cwd=REPO,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        worker = WorkerProcess(proc)
        self.workers.append(worker)
        threading.Thread(target=_read, args=(worker,), daemon=True).start()
        if wait:
            self.wait_ready(worker)
        return worker

    def start_workers(self, count: int, **env: str) -> list[WorkerProcess]:
        """Starts `count` workers at once (each takes seconds to import the pipeline)."""
        workers = [self.start_worker(wait=False, **env) for _ in range(count)]
        for worker in workers:
            self.wait_ready(worker)
        return workers

    def wait_ready(self, worker: WorkerProcess, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not worker.id:
            assert worker.proc.poll() is None, "the worker exited:\n" + worker.log()
            assert time.monotonic() < deadline, "the worker never started:\n" + worker.log()
            time.sleep(0.05)

    @contextmanager
    def web_process(self, slack: FakeSlack) -> Iterator[WebProcess]:
        """`trainbot serve --no-worker` on this database, its Slack Web API the fake."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        environment = self._environment(len(self.webs), "web") | {
            "SLACK_BOT_TOKEN": slack.token,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack.api_url,
            "TRAINBOT_API_TOKEN": "status-api-secret",
            "PORT": str(port),
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--no-worker", "--host", "127.0.0.1"],
            cwd=REPO,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        web = WebProcess(WorkerProcess(proc), f"http://127.0.0.1:{port}")
        self.webs.append(web)
        threading.Thread(target=_read, args=(web.process,), daemon=True).start()
        try:
            deadline = time.monotonic() + 60
            while not _answers(web.base + "/healthz"):
                assert proc.poll() is None, web.process.log()
                assert time.monotonic() < deadline, "serve never answered:\n" + web.process.log()
                time.sleep(0.2)
            yield web
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        assert "Traceback" not in web.process.log(), web.process.log()

    def close(self) -> None:
        for worker in self.workers:
            if worker.proc.poll() is None:
                worker.sigkill()
        for directory in self.sandboxes.glob("standin-*"):
            kill_groups(directory)  # the apps that outlived their workers, as E2B's would
        self.engine.dispose()

    # -- jobs ----------------------------------------------------------------------------

    def submit(self, name: str = "model", **fields: Any) -> str:
        """Queues a job from this process, as the web process or the CLI would."""
        fields.setdefault("dataset_source", str(self.dataset))
        fields.setdefault("target_column", "label")
        fields.setdefault("requested_by", "U1")
        fields.setdefault("ttl_seconds", 600)
        with session_scope(self.engine) as session:
            return queries.create_job(session, name=name, origin="cli", **fields).id

    def job(self, job_id: str) -> TrainingJob:
        with session_scope(self.engine) as session:
            job = queries.get_job(session, job_id=job_id)
        assert job is not None
        return job

    def wait_for(
        self,
        job_id: str,
        statuses: frozenset[JobStatus] | set[JobStatus] = SETTLED,
        timeout: float = 60,
    ) -> TrainingJob:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job.job_status in statuses:
                return job
            time.sleep(0.05)
        raise AssertionError(f"job {job_id[:8]} is still {self.job(job_id).status}\n{self.logs()}")

    def events(self, job_id: str, kind: str | None = None) -> list[JobEvent]:
        with session_scope(self.engine) as session:
            return list(queries.list_events(session, job_id=job_id, kinds=[kind] if kind else None))

    def messages(self, job_id: str, kind: str | None = None) -> list[str]:
        return [e.message for e in self.events(job_id, kind)]

    def first_started_at(self, job_id: str) -> datetime | None:
        started = self.events(job_id, "started")
        return _utc(started[0].at) if started else None

    # -- the journal ---------------------------------------------------------------------

    def entries(self) -> list[dict[str, Any]]:
        if not self.journal.exists():
            return []
        return [json.loads(line) for line in self.journal.read_text().splitlines()]

    def runs(self, job_id: str | None = None) -> list[Run]:
        entries = self.entries()
        runs = []
        for start in entries:
            if start["event"] != "run-start" or job_id not in (None, start["job"]):
                continue
            ends = [
                e
                for e in entries
                if e["sandbox"] == start["sandbox"]
                and e["event"] in ("run-end", "stop", "kill")
                and e["at"] >= start["at"]
            ]
            end = min(ends, key=lambda e: e["at"]) if ends else None
            runs.append(
                Run(
                    job=start["job"],
                    worker=start["worker"],
                    sandbox=start["sandbox"],
                    pgid=start["pgid"],
                    start=start["at"],
                    end=end["at"] if end else None,
                    ended_by=end["event"] if end else "",
                )
            )
        return sorted(runs, key=lambda r: r.start)

    def wait_for_runs(self, job_id: str, count: int, timeout: float = 30) -> list[Run]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.runs(job_id)
            if len(runs) >= count:
                return runs
            time.sleep(0.05)
        raise AssertionError(f"job {job_id[:8]} ran {len(self.runs(job_id))} times\n{self.logs()}")

    def assert_never_two_at_once(self) -> None:
        """No job's training ran in two places at the same time."""
        by_job: dict[str, list[Run]] = {}
        for run in self.runs():
            by_job.setdefault(run.job, []).append(run)
        for job_id, runs in by_job.items():
            for earlier, later in zip(runs, runs[1:], strict=False):
                assert earlier.end is not None and earlier.end <= later.start, (job_id, runs)

    def logs(self) -> str:
        return "\n".join(f"--- worker {w.id or w.proc.pid}\n{w.log()}" for w in self.workers)


def _read(worker: WorkerProcess) -> None:
    assert worker.proc.stdout is not None
    for line in worker.proc.stdout:
        line = line.rstrip("\n")
        worker.lines.append(line)
        worker.printed_at.setdefault(line, time.monotonic())
        if line.startswith("WORKER "):
            worker.id = line.split(" ", 1)[1]


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


@contextmanager
def worker_fleet(root: Path, **env: str) -> Iterator[Fleet]:
    """A fresh PostgreSQL database and a sandbox root; workers are started by the test."""
    with fresh_postgres_database() as url:
        fleet = Fleet(url, root, env)
        try:
            yield fleet
        finally:
            fleet.close()
        logs = fleet.logs()
        assert "Traceback" not in logs, logs


__all__ = ["Fleet", "Run", "WorkerProcess", "group_alive", "worker_fleet"]
