"""The job worker: claims queued jobs from the database, runs them, and keeps the queue whole.

Any number of workers, in any number of processes, share one database. APScheduler (3.11)
runs inside each: claimed jobs in the "jobs" executor; the claim loop, lease renewal and the
sweep (takeovers of jobs whose worker died, expiries, expiry notices) as interval jobs in
"housekeeping". On PostgreSQL a NOTIFY wakes the claim loop the moment a job is queued; the
interval (TRAINBOT_POLL_SECONDS) is the poll that works alone. Nothing here is the truth:
every decision is a compare-and-set on the job's row (storage.queue).
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Protocol

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError as SchedulerJobMissing
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.engine import Engine

from pipeline.cancel import CancelToken
from pipeline.events import Event, EventKind
from pipeline.recorder import JobRecorder
from pipeline.runner import JOB, JobRunner, PipelineDeps
from pipeline.sandbox.base import Sandbox, SandboxProvider
from storage import queries, queue
from storage.db import session_scope
from storage.models import TrainingJob
from storage.notify import JOBS_CHANNEL, Wakeup
from storage.states import IllegalTransition, JobStatus, NotHeld

log = logging.getLogger(__name__)

STOP_REASON = "the service stopped while this job was running; retry it to run it again"
HANDED_BACK = (
    "this worker is stopping (a deploy or a restart); the job goes back to the queue and "
    "starts again from the beginning on another worker"
)
WORKER_GONE_APP = "the worker serving it stopped"
# How long a stopping worker waits for its jobs' runs to clean up after it stopped them.
STOP_WAIT_SECONDS = 5.0
# How old the answer to "does this worker still hold the job" may be when a running job asks
# (a cancel from another process, a takeover): the bound on how long a lost job runs on.
HELD_CHECK_SECONDS = 1.0


def new_worker_id() -> str:
    """Unique per process start: host, pid and a random tail (pids are reused)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(3)}"


def job_slots(configured: int | None, sandboxes: SandboxProvider) -> int:
    """Jobs one worker runs at once: TRAINBOT_MAX_CONCURRENT_JOBS, else what its sandboxes
    can drive. A running job is a thread of this process waiting on its sandbox (the local
    one's processes, E2B's HTTP stream): a waiting thread costs about 20 KB resident (its
    stack is mostly virtual), so hundreds of remote jobs fit in one worker (bench/fleet.py
    runs 200)."""
    return configured or sandboxes.concurrent_jobs


class Runs(Protocol):
    """What runs one claimed job (pipeline.runner.JobRunner; tests pass a stand-in)."""

    def run(self, job_id: str, token: CancelToken, *, owner: str) -> Sandbox | None: ...


class JobWorker:
    def __init__(
        self, deps: PipelineDeps, *, worker_id: str | None = None, runner: Runs | None = None
    ) -> None:
        self.deps = deps
        self.id = worker_id or new_worker_id()
        self.runner = runner or JobRunner(deps)
        settings = deps.settings
        self.lease_seconds = settings.lease_seconds
        self.slots = job_slots(settings.max_concurrent_jobs, deps.sandboxes)
        self.scheduler = BackgroundScheduler(
            executors={
                "jobs": ThreadPoolExecutor(self.slots),
                # The claim loop, renewals and sweeps never wait behind a long training run.
                "housekeeping": ThreadPoolExecutor(4),
            },
            job_defaults={"misfire_grace_time": None, "coalesce": True, "max_instances": 1},
            timezone=UTC,
        )
        self._wakeup = Wakeup(deps.engine, JOBS_CHANNEL, listen=settings.listen)
        self._running: dict[str, CancelToken] = {}  # claimed jobs, until their run returns
        self._handing_back: set[str] = set()  # stopped by a drain: not renewed, not failed
        self._apps: dict[str, Sandbox] = {}  # live apps that die with this process
        self._lock = threading.Lock()
        self._letting_go: set[str] = set()  # gone live, released: not taken from this worker
        self._held = HeldCheck(deps.engine, self.id, self._running_ids)
        self._claim_lock = threading.Lock()  # one claim at a time in this process
        self._claim_pending = False  # a wake-up asked for a claim that has not begun
        self._idle = threading.Condition(self._lock)
        self._claiming = False
        self._only: frozenset[str] | None = None
        self._stopped = threading.Event()

    # -- lifecycle ---------------------------------------------------------------------

    def start(
        self, *, claim: bool = True, only: Iterable[str] | None = None, loops: bool = True
    ) -> None:
        """Starts the loops. `only`: claim just these jobs (`trainbot run` runs its own job,
        never one queued from Slack); `claim` False: sweep and serve apps, claim nothing;
        `loops` False: the caller drives `claim`, `renew` and `sweep` (tests, one step at a
        time)."""
        self._only = frozenset(only) if only is not None else None
        self._claiming = claim
        self.scheduler.start()
        if not loops:
            return
        now = datetime.now(UTC)
        housekeeping = max(0.5, self.lease_seconds / 3)
        if claim:
            # One claim running, one asked for by a wake-up (waiting on the first), and the
            # poll's: a wake-up is never dropped, and APScheduler never warns of a skip.
            self._every("claim", self.claim, self.deps.settings.poll_seconds, now, instances=3)
        self._every("renew", self.renew, housekeeping, now)
        # The first sweep at start: a restarted process takes over its old jobs' leases
        # as soon as they run out, not an interval later.
        self._every("sweep", self.sweep, housekeeping, now)
        self._wakeup.start()
        threading.Thread(target=self._follow_wakeups, name="worker-wakeups", daemon=True).start()

    def wake(self) -> None:
        """Look for queued jobs now (a job was queued or a slot came free). Wake-ups that
        land before the claim they asked for has begun fold into it."""
        if not self._claiming or not self.scheduler.running:
            return
        with self._lock:
            if self._claim_pending:
                return
            self._claim_pending = True
        try:
            self.scheduler.modify_job("claim", next_run_time=datetime.now(UTC))
        except SchedulerJobMissing:
            with self._lock:
                self._claim_pending = False

    def job_ended(self, job_id: str) -> None:
        """Cancelled from this process: stop at once what the database would say in a moment."""
        with self._lock:
            token = self._running.get(job_id)
            app = self._apps.pop(job_id, None)
        if token is not None:
            token.cancel()
        if app is not None:
            self._in_background(_kill, app)

    def drain(self, grace: float | None = None) -> None:
        """A deploy's SIGTERM: stop claiming, let running jobs finish within `grace` seconds,
        then hand the rest back to the queue for other workers, saying so in their threads.
        Apps that die with this process are stopped, and their jobs say why."""
        grace = self.deps.settings.drain_seconds if grace is None else grace
        self._claiming = False
        self._remove_scheduled("claim")
        deadline = time.monotonic() + grace
        with self._idle:
            while self._running and time.monotonic() < deadline:
                self._idle.wait(min(0.2, max(0.0, deadline - time.monotonic())))
            left = dict(self._running)
            self._handing_back |= set(left)
        for token in left.values():
            token.cancel()
        self._wait_runs(STOP_WAIT_SECONDS)
        for job_id in left:
            self._hand_back(job_id)
        self._stop_apps(WORKER_GONE_APP)
        self._stop_loops()

    def shutdown(self) -> None:
        """Stops the worker for good (`trainbot run` ends): jobs still running fail with a
        reason that says to retry them; apps that die with this process are stopped."""
        self._claiming = False
        with self._lock:
            running = dict(self._running)
        for job_id, token in running.items():
            self._fail(job_id, STOP_REASON)
            token.cancel()
        self._wait_runs(STOP_WAIT_SECONDS)
        self._stop_apps("the service stopped")
        self._stop_loops()

    # -- the loops -----------------------------------------------------------------------

    def claim(self) -> list[str]:
        """Claims queued jobs for this worker's free slots and starts them; their ids."""
        with self._claim_lock:
            with self._lock:
                self._claim_pending = False  # from here this claim sees every queued job
            return self._claim_free_slots()

    def _claim_free_slots(self) -> list[str]:
        if not self._claiming:
            return []
        with self._lock:
            free = self.slots - len(self._running)
        if free <= 0:
            return []
        claimed = queue.claim_jobs(
            self.deps.engine,
            worker_id=self.id,
            count=free,
            lease_seconds=self.lease_seconds,
            limits=self._limits(),
            only=self._only,
        )
        for job_id in claimed:
            # Asked at every poll: the answer is one shared read, at most a second old.
            token = CancelToken(partial(self._held.lost, job_id), poll_seconds=0.0)
            with self._lock:
                self._running[job_id] = token
            self.scheduler.add_job(
                self._run, args=[job_id, token], id=f"run:{job_id}", executor="jobs"
            )
        return claimed

    def renew(self) -> None:
        """Renews the leases of the jobs and apps this worker holds; stops any it lost."""
        with self._lock:
            running = set(self._running) - self._handing_back
            apps = set(self._apps)
        if not running and not apps:
            return
        with session_scope(self.deps.engine) as session:
            held = queue.renew_leases(
                session,
                worker_id=self.id,
                job_ids=running | apps,
                lease_seconds=self.lease_seconds,
            )
        for job_id in running - held:
            with self._lock:
                # A job that went live meanwhile was let go by this worker, not taken.
                token = None if job_id in self._letting_go else self._running.get(job_id)
            if token is not None:
                log.warning("job %s was taken from this worker; stopping its run", job_id[:8])
                token.cancel()
        for job_id in apps - held:
            with self._lock:
                app = self._apps.pop(job_id, None)
            if app is not None:
                _kill(app)  # cancelled or expired from elsewhere: the app goes with the job

    def sweep(self) -> None:
        """What any worker does for all: take over jobs whose worker died, stop apps whose
        time is up, and tell threads of apps that stop soon."""
        with session_scope(self.deps.engine) as session:
            stalled = queue.stalled_jobs(session)
        for job in stalled:
            self._take_over(job)
        self._expire_due()
        self._send_expiry_notices()

    # -- running a job ---------------------------------------------------------------------

    def _run(self, job_id: str, token: CancelToken) -> None:
        sandbox: Sandbox | None = None
        try:
            sandbox = self.runner.run(job_id, token, owner=self.id)
            if sandbox is not None:
                self._keep_app(job_id, sandbox)
        finally:
            with self._idle:
                self._running.pop(job_id, None)
                self._letting_go.discard(job_id)
                self._idle.notify_all()
            self.wake()  # a slot came free

    def _keep_app(self, job_id: str, sandbox: Sandbox) -> None:
        """A job went live. An app that outlives this process (E2B) needs no worker: let go
        of it; one that dies with it (local) is held, its lease renewed, until it ends."""
        if self.deps.sandboxes.survives_worker:
            with self._lock:
                self._letting_go.add(job_id)
            with session_scope(self.deps.engine) as session:
                queue.release(session, job_id=job_id, worker_id=self.id)
            return
        with self._lock:
            self._apps[job_id] = sandbox

    def _running_ids(self) -> set[str]:
        with self._lock:
            return set(self._running)

    # -- takeovers, hand-backs, expiry -------------------------------------------------------

    def _take_over(self, seen: TrainingJob) -> None:
        with session_scope(self.deps.engine) as session:
            won = queue.take_over(
                session, seen=seen, worker_id=self.id, lease_seconds=self.lease_seconds
            )
        if not won:
            return  # renewed meanwhile, or another worker got there first
        self._kill_by_id(seen)  # whatever is left of its sandbox: never two copies at once
        if seen.job_status == JobStatus.LIVE:
            self._expire(seen.id, WORKER_GONE_APP)
            return
        max_runs = self.deps.settings.max_runs
        runs = max(seen.runs, 1)  # rows from before runs were counted ran once
        if runs < max_runs:
            message = (
                "the worker running this job stopped; starting again, "
                f"attempt {runs + 1} of {max_runs}"
            )
            self._requeue(seen.id, message, count_run=True)
        else:
            self._fail(
                seen.id,
                f"the worker running this job stopped {seen.runs} times; retry it to run it again",
            )

    def _hand_back(self, job_id: str) -> None:
        self._requeue(job_id, HANDED_BACK, count_run=False)
        with self._lock:
            self._handing_back.discard(job_id)

    def _requeue(self, job_id: str, message: str, *, count_run: bool) -> None:
        recorder = self._recorder(job_id)
        with session_scope(self.deps.engine) as session:
            if not queue.hand_back(session, job_id=job_id, worker_id=self.id, count_run=count_run):
                return  # it ended meanwhile (a cancel)
            event = recorder.emit_in(
                session, EventKind.WARNING, JOB, message, status=JobStatus.QUEUED.value
            )
        recorder.announce(event)

    def _expire_due(self) -> None:
        dying = [] if self.deps.sandboxes.survives_worker else [self.deps.sandboxes.name]
        with session_scope(self.deps.engine) as session:
            due = queue.apps_to_stop(session, unowned_providers=dying)
        for job in due:
            unheld = job.worker_id is None and job.sandbox_provider in dying
            reason = "it stopped when the service restarted" if unheld else "its lifetime ran out"
            with self._lock:
                mine = self._apps.pop(job.id, None)
            if self._expire(job.id, reason, sandbox=mine) and mine is None:
                self._kill_by_id(job)

    def _send_expiry_notices(self) -> None:
        notice = self.deps.settings.expiry_notice_seconds
        if notice <= 0:
            return
        before = datetime.now(UTC) + timedelta(seconds=notice)
        with session_scope(self.deps.engine) as session:
            due = queue.apps_to_warn(session, before=before)
        for job in due:
            if job.expires_at is None:
                continue
            recorder = self._recorder(job.id)
            with session_scope(self.deps.engine) as session:
                if not queue.mark_expiry_notice(session, job_id=job.id, expires_at=job.expires_at):
                    continue  # another worker sent it, or the app was extended meanwhile
                event = recorder.emit_in(
                    session,
                    EventKind.EXPIRING,
                    JOB,
                    f"the live app stops at {job.expires_at:%H:%M} UTC",
                    expires_at=job.expires_at.isoformat(),
                )
            recorder.announce(event)

    def expire(self, job_id: str, *, reason: str = "its lifetime ran out") -> None:
        """Stops a live app now (`trainbot run` when its person presses Ctrl-C)."""
        with self._lock:
            app = self._apps.pop(job_id, None)
        if self._expire(job_id, reason, sandbox=app) and app is None:
            with session_scope(self.deps.engine) as session:
                job = queries.get_job(session, job_id=job_id)
            if job is not None:
                self._kill_by_id(job)  # an app nobody holds (E2B): stopped by its id

    def _expire(self, job_id: str, reason: str, *, sandbox: Sandbox | None = None) -> bool:
        """Live -> expired with its event, in one transaction. True when this call made it."""
        recorder = self._recorder(job_id)
        event: Event | None = None
        try:
            with session_scope(self.deps.engine) as session:
                queries.transition(session, job_id=job_id, to=JobStatus.EXPIRED)
                event = recorder.emit_in(
                    session,
                    EventKind.FINISHED,
                    JOB,
                    f"the live app was stopped: {reason}",
                    status=JobStatus.EXPIRED.value,
                )
        except IllegalTransition:
            pass  # it ended meanwhile (cancelled, or expired by another worker)
        if sandbox is not None:
            _kill(sandbox)
        if event is None:
            return False
        recorder.announce(event)
        return True

    def _fail(self, job_id: str, reason: str) -> None:
        recorder = self._recorder(job_id)
        try:
            with session_scope(self.deps.engine) as session:
                job = queries.transition(
                    session, job_id=job_id, to=JobStatus.FAILED, error=reason, owner=self.id
                )
                event = recorder.emit_in(
                    session, EventKind.FAILED, job.stage or JOB, reason, status="failed"
                )
        except (IllegalTransition, NotHeld):
            return  # it ended meanwhile
        recorder.announce(event)

    def _stop_apps(self, reason: str) -> None:
        with self._lock:
            apps = dict(self._apps)
            self._apps.clear()
        for job_id, app in apps.items():
            self._expire(job_id, reason, sandbox=app)

    def _kill_by_id(self, job: TrainingJob) -> None:
        """Kills a sandbox this process does not hold, by the id its job recorded."""
        if not job.sandbox_id or job.sandbox_provider not in (None, self.deps.sandboxes.name):
            return
        try:
            self.deps.sandboxes.kill(job.sandbox_id)
        except Exception:  # noqa: BLE001 - the job's state is decided either way
            log.exception("could not kill sandbox %s", job.sandbox_id)

    # -- plumbing ----------------------------------------------------------------------------

    def _limits(self) -> queue.Limits:
        settings = self.deps.settings
        sandboxes = self.deps.sandboxes
        return queue.Limits(
            per_workspace=settings.max_jobs_per_workspace,
            per_user=settings.max_jobs_per_user,
            sandboxes=settings.sandbox_limit or sandboxes.concurrent_limit,
            provider=sandboxes.name,
        )

    def _every(
        self, name: str, task: object, seconds: float, first: datetime, *, instances: int = 1
    ) -> None:
        self.scheduler.add_job(
            task,
            trigger="interval",
            seconds=seconds,
            id=name,
            executor="housekeeping",
            next_run_time=first,
            replace_existing=True,
            max_instances=instances,
        )

    def _follow_wakeups(self) -> None:
        while not self._stopped.is_set():
            if self._wakeup.wait(1.0):
                self.wake()

    def _wait_runs(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._running and time.monotonic() < deadline:
                self._idle.wait(0.2)

    def _stop_loops(self) -> None:
        self._stopped.set()
        self._wakeup.stop()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def _in_background(self, task: object, *args: object) -> None:
        if self.scheduler.running:
            self.scheduler.add_job(task, args=list(args), executor="housekeeping")
        else:
            task(*args)  # type: ignore[operator]

    def _remove_scheduled(self, scheduler_job_id: str) -> None:
        try:
            self.scheduler.remove_job(scheduler_job_id)
        except SchedulerJobMissing:
            pass

    def _recorder(self, job_id: str) -> JobRecorder:
        return JobRecorder(self.deps.engine, job_id, self.deps.sink)


class HeldCheck:
    """The running jobs' stop signal: whether this worker still holds each (not cancelled from
    another process, not taken over), read for all of them at once. Each job asked for itself
    once a second, so with hundreds of remote jobs in one process that was a query every few
    milliseconds, CPU spent beside the web server's acks; now it is one query a second.

    The first job to ask once the last read is `every` seconds old reads again, for every
    running job; the others are answered from the last read meanwhile, so a lost job stops
    within the same bound as before (`every`, plus the read, plus its own poll). A job is
    judged only by a read that asked about it: one claimed after a read began may be missing
    from its answer without being lost."""

    def __init__(
        self,
        engine: Engine,
        worker_id: str,
        running: Callable[[], set[str]],
        *,
        every: float = HELD_CHECK_SECONDS,
    ) -> None:
        self.engine = engine
        self.worker_id = worker_id
        self.running = running
        self.every = every
        self._lock = threading.Lock()
        self._asked: set[str] = set()
        self._held: set[str] = set()
        self._read_at = -math.inf
        self._reading = False

    def lost(self, job_id: str) -> bool:
        if self._due():
            self._read()
        with self._lock:
            return job_id in self._asked and job_id not in self._held

    def _due(self) -> bool:
        """True for the one caller that is to read now."""
        with self._lock:
            if self._reading or time.monotonic() - self._read_at < self.every:
                return False
            self._reading = True
            return True

    def _read(self) -> None:
        started = time.monotonic()
        try:
            asked = self.running()
            with session_scope(self.engine) as session:
                held = queue.held_jobs(session, worker_id=self.worker_id, job_ids=asked)
            with self._lock:
                self._asked, self._held = asked, held
        finally:
            # A failed read (it raises in the job that made it, as each job's own check did)
            # waits its turn too: a database that is down is not asked at every job's poll.
            with self._lock:
                self._read_at, self._reading = started, False


def _kill(sandbox: Sandbox) -> None:
    try:
        sandbox.kill()
    except Exception:  # noqa: BLE001 - the job's state is decided either way
        log.exception("could not kill sandbox %s", getattr(sandbox, "id", "?"))
