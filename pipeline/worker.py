"""The job worker: APScheduler triggers jobs and expiries; the database holds the truth.

Nothing is kept only in the scheduler. On start the worker reads the jobs table and
re-queues what was queued, fails what was interrupted, and re-arms app expiries.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError as SchedulerJobMissing
from apscheduler.schedulers.background import BackgroundScheduler

from pipeline.cancel import CancelToken
from pipeline.events import EventKind
from pipeline.recorder import JobRecorder
from pipeline.runner import JOB, JobRunner, PipelineDeps
from pipeline.sandbox.base import Sandbox
from storage import queries
from storage.db import session_scope
from storage.models import TrainingJob
from storage.states import ACTIVE, RUNNING_STAGES, IllegalTransition, JobStatus

log = logging.getLogger(__name__)

RESTART_REASON = "the service restarted while this job was running; retry it to run it again"
STOP_REASON = "the service stopped while this job was running; retry it to run it again"


class JobWorker:
    def __init__(self, deps: PipelineDeps) -> None:
        self.deps = deps
        self.runner = JobRunner(deps)
        self.scheduler = BackgroundScheduler(
            executors={
                "jobs": ThreadPoolExecutor(deps.settings.max_concurrent_jobs),
                # Expiries and cancels never wait behind a long training run.
                "housekeeping": ThreadPoolExecutor(2),
            },
            job_defaults={"misfire_grace_time": None, "coalesce": True, "max_instances": 1},
            timezone=UTC,
        )
        self._tokens: dict[str, CancelToken] = {}
        self._live: dict[str, Sandbox] = {}
        self._lock = threading.Lock()
        self._stopping = False

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, *, recover: bool = True) -> None:
        self.scheduler.start()
        if recover:
            self.recover()

    def shutdown(self, *, stop_apps: bool | None = None) -> None:
        """Stops the worker. Jobs still running fail with a reason that says to retry them.

        Live apps are stopped when they would die with this process anyway (the local
        sandbox) or when asked; cloud apps otherwise live on and are re-armed on start.
        """
        with self._lock:
            # From here no job thread touches the scheduler: APScheduler's shutdown holds its
            # job-store lock while it waits for those threads, so a late add_job would hang.
            self._stopping = True
            running = list(self._tokens.items())
        for job_id, token in running:
            self._fail(job_id, STOP_REASON)
            token.cancel()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        if stop_apps if stop_apps is not None else self.deps.sandboxes.name == "local":
            for job_id in list(self._live):
                self.expire(job_id, reason="the service stopped")

    def recover(self) -> None:
        with session_scope(self.deps.engine) as session:
            jobs = queries.list_jobs(session, statuses=[*ACTIVE, JobStatus.LIVE], limit=10_000)
        for job in jobs:
            if job.job_status == JobStatus.QUEUED:
                self.submit(job.id)
            elif job.job_status in RUNNING_STAGES:
                self._fail_interrupted(job)
            elif job.job_status == JobStatus.LIVE:
                self._rearm_expiry(job)

    # -- jobs ----------------------------------------------------------------------------

    def submit(self, job_id: str) -> None:
        """Starts a queued job as soon as a worker slot is free."""
        self.scheduler.add_job(
            self._run,
            args=[job_id],
            id=f"run:{job_id}",
            executor="jobs",
            next_run_time=datetime.now(UTC),
            replace_existing=True,
        )

    def cancel(self, job_id: str) -> TrainingJob:
        """Cancels a queued or running job, or stops a live app. Raises IllegalTransition.

        Only the state change happens here; killing a sandbox (seconds, for a cloud one)
        happens in the background, so a Slack command can answer at once.
        """
        with session_scope(self.deps.engine) as session:
            job = queries.transition(session, job_id=job_id, to=JobStatus.CANCELLED)
            was_live = job.deployment_url is not None
        with self._lock:
            token = self._tokens.get(job_id)
            sandbox = self._live.pop(job_id, None)
        self._remove_scheduled(f"expire:{job_id}")
        if token is not None:
            token.cancel()  # the runner (or _run, if it just finished) stops the sandbox
            return job
        self._remove_scheduled(f"run:{job_id}")
        self._in_background(self._kill_sandbox, sandbox, job.sandbox_id)
        self._recorder(job_id).emit(
            EventKind.FINISHED,
            JOB,
            "the live app was stopped" if was_live else "cancelled",
            status=JobStatus.CANCELLED.value,
        )
        return job

    def expire(self, job_id: str, *, reason: str = "its lifetime ran out") -> None:
        with self._lock:
            sandbox = self._live.pop(job_id, None)
        try:
            with session_scope(self.deps.engine) as session:
                job = queries.transition(session, job_id=job_id, to=JobStatus.EXPIRED)
        except IllegalTransition:  # cancelled meanwhile, perhaps from another process
            self._kill_sandbox(sandbox, None)
            return
        self._kill_sandbox(sandbox, job.sandbox_id)
        self._recorder(job_id).emit(
            EventKind.FINISHED, JOB, f"the live app was stopped: {reason}", status="expired"
        )

    def extend(self, job_id: str, seconds: int) -> datetime | None:
        """Keeps a live app up `seconds` from now: records and re-arms the end the provider
        reports. None when this process does not hold the app's sandbox (only the process
        that started it can reach a local one)."""
        # Under the lock, so a cancel or expiry cannot take the sandbox away mid-call.
        with self._lock:
            sandbox = self._live.get(job_id)
            if sandbox is None:
                return None
            ends = sandbox.extend(seconds)
            with session_scope(self.deps.engine) as session:
                job = queries.update_job(session, job_id=job_id, expires_at=ends)
            if not self._stopping:
                self._schedule_expiry(job)  # replaces the old timer
        return ends

    # -- internals -----------------------------------------------------------------------

    def _run(self, job_id: str) -> None:
        token = CancelToken(lambda: self._cancelled_in_db(job_id))
        with self._lock:
            self._tokens[job_id] = token
        sandbox = None
        try:
            sandbox = self.runner.run(job_id, token)
        finally:
            if sandbox is None:
                with self._lock:
                    self._tokens.pop(job_id, None)
        if sandbox is None:
            return
        # Hand the app over from the token to the live set atomically, so a cancel that
        # lands now is seen either here or by cancel(), never by nobody.
        with self._lock:
            self._tokens.pop(job_id, None)
            with session_scope(self.deps.engine) as session:
                job = queries.get_job(session, job_id=job_id)
            live = job is not None and job.job_status == JobStatus.LIVE
            if live and job is not None:
                self._live[job_id] = sandbox
                if not self._stopping:
                    self._schedule_expiry(job)
        if live:
            return
        self._kill_sandbox(sandbox, None)
        self._recorder(job_id).emit(
            EventKind.FINISHED, JOB, "the live app was stopped", status=job.status if job else ""
        )

    def _cancelled_in_db(self, job_id: str) -> bool:
        with session_scope(self.deps.engine) as session:
            job = queries.get_job(session, job_id=job_id)
            return job is None or job.job_status == JobStatus.CANCELLED

    def _schedule_expiry(self, job: TrainingJob) -> None:
        self.scheduler.add_job(
            self.expire,
            args=[job.id],
            id=f"expire:{job.id}",
            executor="housekeeping",
            trigger="date",
            run_date=job.expires_at or datetime.now(UTC),
            replace_existing=True,
        )

    def _rearm_expiry(self, job: TrainingJob) -> None:
        """A live job from before a restart: keep it only if its app still answers."""
        expired = job.expires_at is None or job.expires_at <= datetime.now(UTC)
        if expired or not _answers(job.deployment_url):
            self.expire(job.id, reason="it stopped when the service restarted")
        else:
            self._schedule_expiry(job)

    def _fail_interrupted(self, job: TrainingJob) -> None:
        self._kill_sandbox(None, job.sandbox_id)
        self._fail(job.id, RESTART_REASON)

    def _fail(self, job_id: str, reason: str) -> None:
        try:
            with session_scope(self.deps.engine) as session:
                job = queries.transition(session, job_id=job_id, to=JobStatus.FAILED, error=reason)
        except IllegalTransition:
            return  # it ended meanwhile
        self._recorder(job_id).emit(EventKind.FAILED, job.stage or JOB, reason, status="failed")

    def _kill_sandbox(self, sandbox: Sandbox | None, sandbox_id: str | None) -> None:
        """Kills the sandbox object this process holds, or else the one with this id."""
        try:
            if sandbox is not None:
                sandbox.kill()
            elif sandbox_id:
                self.deps.sandboxes.kill(sandbox_id)  # started by another process
        except Exception:  # noqa: BLE001 - the state change already happened
            log.exception("could not kill sandbox %s", sandbox_id or getattr(sandbox, "id", "?"))

    def _in_background(self, task: Callable[..., None], *args: object) -> None:
        if self.scheduler.running:
            self.scheduler.add_job(task, args=list(args), executor="housekeeping")
        else:
            task(*args)

    def _remove_scheduled(self, scheduler_job_id: str) -> None:
        try:
            self.scheduler.remove_job(scheduler_job_id)
        except SchedulerJobMissing:
            pass

    def _recorder(self, job_id: str) -> JobRecorder:
        return JobRecorder(self.deps.engine, job_id, self.deps.sink)


def _answers(url: str | None) -> bool:
    if not url:
        return False
    try:
        return httpx.get(url.rstrip("/") + "/health", timeout=3.0).status_code == 200
    except httpx.HTTPError:
        return False
