"""A noisy training script: a whole iris job whose train.py prints 100,000 lines first.

Two Rows. Wall time, submit -> verified live app, against the same job printing nothing,
quiet and noisy runs taken in turns after a warm-up job (target: at most 1.2x). And the
noisy job's job_events rows against the bound: the quiet job's rows plus the output's
stored head, tail and note (pipeline/limits.py LOG_HEAD_LINES, LOG_TAIL_LINES), whatever
the script prints; the row passes only if the job's train.log artifact holds every line.
Both jobs train with the least budget (MIN_BUDGET), so the printing weighs the most.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench.cases import Row
from pipeline.budget import MIN_BUDGET
from pipeline.command_log import TRAIN_LOG
from pipeline.events import StoredOnly
from pipeline.limits import LOG_HEAD_LINES, LOG_TAIL_LINES
from pipeline.service import JobService
from pipeline.settings import Settings
from storage import queries
from storage.db import session_scope
from storage.models import TrainingJob
from storage.states import JobStatus
from tests.support.noisy import NoisyGenerator, printed_line

if TYPE_CHECKING:
    from pipeline.bootstrap import Services

SETTLED = {JobStatus.LIVE, JobStatus.FAILED, JobStatus.CANCELLED}


def noisy_output(
    root: Path, lines: int = 100_000, runs: int = 2, *, warm_up: bool = True
) -> list[Row]:
    from pipeline.bootstrap import bootstrap

    root.mkdir(parents=True)
    settings = Settings(
        DATABASE_URL=f"sqlite:///{root / 'bench.db'}",
        TRAINBOT_DATA_DIR=root / "data",
        TRAINBOT_CODEGEN="template",
        TRAINBOT_SANDBOX="local",
        TRAINBOT_TRAIN_BUDGET_SECONDS=MIN_BUDGET,
        # The template's own code with a print loop: it may run where nothing isolates it.
        TRAINBOT_ALLOW_UNISOLATED_CODE=True,
    )
    generator = NoisyGenerator(0)
    # What a worker of the bot runs with: the notifier reads job_events, not the sink.
    services = bootstrap(settings, sink=StoredOnly(), codegen=generator)
    services.worker.start()
    quiet: list[float] = []
    noisy: list[float] = []
    try:
        if warm_up:  # the first job loads the data stage's libraries
            _job(services)
        for _ in range(runs):  # in turns, so both see the same load on a shared machine
            quiet_seconds, quiet_job = _job(services)
            quiet.append(quiet_seconds)
            generator.lines = lines
            noisy_seconds, noisy_job = _job(services)
            noisy.append(noisy_seconds)
            generator.lines = 0
        quiet_rows, noisy_rows = _rows(services, quiet_job), _rows(services, noisy_job)
        whole = _whole_output(noisy_job, lines)
    finally:
        services.worker.shutdown()
    quiet_median, noisy_median = statistics.median(quiet), statistics.median(noisy)
    bound = quiet_rows + LOG_HEAD_LINES + LOG_TAIL_LINES + 1
    return [
        Row(
            f"noisy script: {lines:,} lines",
            noisy_median,
            quiet_median,
            1.2,
            note=(
                f"submit -> live app, median of {runs}, vs. the same job printing nothing: "
                f"{noisy_median - quiet_median:+.2f} s for the lines"
            ),
        ),
        Row(
            "noisy script: job_events rows",
            noisy_rows,
            bound,
            1.0,
            unit="rows",
            note=(
                f"{noisy_rows} vs. at most {bound} (the quiet job's "
                f"{quiet_rows} + {LOG_HEAD_LINES} head + {LOG_TAIL_LINES} tail + 1 note); "
                f"{TRAIN_LOG} {'holds every line' if whole else 'IS MISSING LINES'}"
            ),
            extra_ok=whole,
        ),
    ]


def _job(services: Services) -> tuple[float, TrainingJob]:
    started = time.monotonic()
    with session_scope(services.engine) as session:
        job_id = queries.create_job(session, name="noisy", dataset_source="iris").id
    services.worker.wake()
    deadline = started + 300
    while True:
        with session_scope(services.engine) as session:
            job = queries.get_job(session, job_id=job_id)
        assert job is not None
        if job.job_status in SETTLED:
            break
        assert time.monotonic() < deadline, f"job {job_id[:8]} is still {job.status}"
        time.sleep(0.02)
    seconds = time.monotonic() - started
    assert job.job_status == JobStatus.LIVE, job.error
    JobService.of(services).cancel(job_id, by="bench")
    return seconds, job


def _rows(services: Services, job: TrainingJob) -> int:
    with session_scope(services.engine) as session:
        return len(queries.list_events(session, job_id=job.id))


def _whole_output(job: TrainingJob, lines: int) -> bool:
    """The job's train.log starts with every line the script printed, in order."""
    path = Path((job.artifacts or {})[TRAIN_LOG])
    with path.open() as log:
        return all(log.readline().rstrip("\n") == printed_line(n) for n in range(1, lines + 1))
