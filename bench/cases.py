"""The benchmark cases. Each returns a Row: measured vs. a reference from the same run."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from pipeline.codegen.template import TemplateGenerator
from pipeline.events import Event, EventKind, RecordingSink
from pipeline.netguard import UrlGuard
from pipeline.service import JobService
from pipeline.settings import Settings
from pipeline.stages.dataset import load_dataset
from pipeline.stages.train import upload_job_files
from storage import queries
from storage.db import make_engine, session_scope, upgrade
from storage.states import JobStatus

if TYPE_CHECKING:
    from pipeline.bootstrap import Services


@dataclass
class Row:
    name: str
    measured: float
    reference: float
    target: float
    note: str = ""
    extra_ok: bool = True
    # When set, the target is this many units, absolute; the ratio is shown for reference.
    absolute: float | None = None
    unit: str = "s"  # of measured, reference and absolute: "s", "MB", or a count's ("" or "rows")

    @property
    def ratio(self) -> float:
        return self.measured / self.reference if self.reference else float("inf")

    @property
    def passed(self) -> bool:
        within = self.measured <= self.absolute if self.absolute is not None else None
        return (within if within is not None else self.ratio <= self.target) and self.extra_ok


def _settings(root: Path) -> Settings:
    return Settings(
        DATABASE_URL=f"sqlite:///{root / 'bench.db'}",
        TRAINBOT_DATA_DIR=root / "data",
        TRAINBOT_CODEGEN="template",
        TRAINBOT_SANDBOX="local",
    )


def _wait(engine, job_id: str, statuses: set[JobStatus], timeout: float = 300) -> str:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_scope(engine) as session:
            job = queries.get_job(session, job_id=job_id)
        if job is not None and job.job_status in statuses:
            return job.status
        time.sleep(0.02)
    raise TimeoutError(job_id)


def _by_hand(root: Path) -> float:
    """The reference: what the pipeline wraps, done directly."""
    work = root / "by-hand"
    dataset = load_dataset("iris", target=None, guard=UrlGuard(), max_bytes=10**8, workdir=work)
    code = TemplateGenerator().generate(dataset.spec, [])

    class Dir:
        def write_file(self, name: str, data: bytes | str) -> None:
            path = work / name
            path.write_bytes(data if isinstance(data, bytes) else data.encode())

        def write_file_from(self, name: str, source: Path) -> None:
            if source.resolve() != (work / name).resolve():  # the data set is already there
                shutil.copyfile(source, work / name)

    started = time.monotonic()
    upload_job_files(Dir(), code, dataset.spec, dataset.data_path)  # type: ignore[arg-type]
    subprocess.run([sys.executable, "train.py"], cwd=work, check=True, capture_output=True)
    app = subprocess.Popen(
        [sys.executable, "app.py"],
        cwd=work,
        env={"PORT": "8765", "HOST": "127.0.0.1", "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            try:
                if httpx.get("http://127.0.0.1:8765/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        return time.monotonic() - started
    finally:
        app.kill()
        app.wait()


def _cancel(services: Services, job_id: str) -> None:
    JobService.of(services).cancel(job_id, by="bench")


def pipeline_overhead(root: Path, runs: int = 2) -> Row:
    from pipeline.bootstrap import bootstrap

    root.mkdir(parents=True)
    reference = min(_by_hand(root) for _ in range(runs))
    services = bootstrap(_settings(root), sink=RecordingSink())
    services.worker.start()
    try:
        timings = []
        for _ in range(runs):
            started = time.monotonic()
            with session_scope(services.engine) as session:
                job_id = queries.create_job(session, name="bench", dataset_source="iris").id
            services.worker.wake()
            status = _wait(services.engine, job_id, {JobStatus.LIVE, JobStatus.FAILED})
            timings.append(time.monotonic() - started)
            assert status == "live", status
            _cancel(services, job_id)
        measured = min(timings)
    finally:
        services.worker.shutdown()
    return Row(
        "pipeline overhead (iris)",
        measured,
        reference,
        2.0,
        note="submit -> verified live app, vs. train.py + app.py by hand",
    )


def job_start_latency(root: Path, samples: int = 10) -> Row:
    from pipeline.bootstrap import bootstrap

    root.mkdir(parents=True)
    started_at: dict[str, float] = {}

    class Sink:
        def publish(self, event: Event) -> None:
            if event.kind == EventKind.STARTED and event.job_id not in started_at:
                started_at[event.job_id] = time.monotonic()

    services = bootstrap(_settings(root), sink=Sink())
    services.worker.start()
    latencies, round_trips = [], []
    try:
        for _ in range(samples):
            t0 = time.monotonic()
            with session_scope(services.engine) as session:
                job_id = queries.create_job(session, name="b", dataset_source="iris").id
            with session_scope(services.engine) as session:
                queries.get_job(session, job_id=job_id)
            round_trips.append(time.monotonic() - t0)
            submitted = time.monotonic()
            services.worker.wake()  # what the service does after queuing in this process
            while job_id not in started_at:
                time.sleep(0.001)
            latencies.append(started_at[job_id] - submitted)
            _cancel(services, job_id)
            _wait(services.engine, job_id, {JobStatus.CANCELLED})
    finally:
        services.worker.shutdown()
    measured = statistics.median(latencies)
    return Row(
        "job start latency",
        measured,
        statistics.median(round_trips),
        50.0,
        note=f"median of {samples}; worst {max(latencies) * 1000:.0f} ms (target < 500 ms)",
        extra_ok=max(latencies) < 0.5,
    )


def ack_latency(root: Path, acks_per_phase: int = 30) -> Row:
    from tests.fakes.slack_api import FakeSlack
    from tests.support.pipeline import ScriptedGenerator
    from tests.support.slack_bot import running_bot

    root.mkdir(parents=True)
    engine = make_engine(f"sqlite:///{root / 'acks.db'}")
    upgrade(engine)
    slow = ScriptedGenerator(train_py="import time\nx = sum(i * i for i in range(10**9))\n")
    with FakeSlack() as fake, running_bot(engine, root, fake, codegen=slow) as bot:

        def acks(n: int) -> list[float]:
            bot.sender.ack_seconds.clear()
            for _ in range(n):
                bot.sender.command("help")
            return list(bot.sender.ack_seconds)

        idle = statistics.median(acks(acks_per_phase))
        with session_scope(engine) as session:
            job_id = queries.create_job(session, name="busy", dataset_source="iris").id
        services = bot.runtime.ctx.services
        services.worker.wake()
        _wait(engine, job_id, {JobStatus.TRAINING})
        time.sleep(1)
        busy_acks = acks(acks_per_phase)
        _cancel(services, job_id)
    busy = statistics.median(busy_acks)
    return Row(
        "slack ack while training",
        busy,
        idle,
        3.0,
        note=(
            f"median of {acks_per_phase}; worst {max(busy_acks) * 1000:.0f} ms "
            "(Slack allows 3000 ms)"
        ),
        extra_ok=max(busy_acks) < 1.0,
    )
