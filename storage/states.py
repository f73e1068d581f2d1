"""The training job's state machine. Every status change goes through `check_transition`."""

from __future__ import annotations

import enum


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    FETCHING_RESOURCES = "fetching_resources"
    LOADING_DATA = "loading_data"
    GENERATING_CODE = "generating_code"
    TRAINING = "training"
    DEPLOYING = "deploying"
    LIVE = "live"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


# The running stages, in the order the runner moves through them.
RUNNING_STAGES: tuple[JobStatus, ...] = (
    JobStatus.FETCHING_RESOURCES,
    JobStatus.LOADING_DATA,
    JobStatus.GENERATING_CODE,
    JobStatus.TRAINING,
    JobStatus.DEPLOYING,
)

TERMINAL: frozenset[JobStatus] = frozenset(
    {JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EXPIRED}
)
ACTIVE: frozenset[JobStatus] = frozenset({JobStatus.QUEUED, *RUNNING_STAGES})


def _allowed() -> dict[JobStatus, frozenset[JobStatus]]:
    allowed: dict[JobStatus, set[JobStatus]] = {s: set() for s in JobStatus}
    chain = (JobStatus.QUEUED, *RUNNING_STAGES, JobStatus.LIVE)
    for here, after in zip(chain, chain[1:], strict=False):
        allowed[here].add(after)
    for status in ACTIVE:
        allowed[status] |= {JobStatus.FAILED, JobStatus.CANCELLED}
    # Generated code that failed in training or deployment goes back for a repair.
    allowed[JobStatus.TRAINING].add(JobStatus.GENERATING_CODE)
    allowed[JobStatus.DEPLOYING].add(JobStatus.GENERATING_CODE)
    # A worker that stops (a deploy, a crash) hands its running jobs back to the queue.
    for status in RUNNING_STAGES:
        allowed[status].add(JobStatus.QUEUED)
    # A live app is stopped either by its lifetime running out or by someone cancelling it.
    allowed[JobStatus.LIVE] |= {JobStatus.EXPIRED, JobStatus.CANCELLED}
    return {s: frozenset(v) for s, v in allowed.items()}


ALLOWED_TRANSITIONS = _allowed()


class IllegalTransition(Exception):
    def __init__(self, current: JobStatus, wanted: JobStatus) -> None:
        super().__init__(f"a job that is {current.value} cannot become {wanted.value}")
        self.current = current
        self.wanted = wanted


class NotHeld(Exception):
    """A worker's change to a job it no longer holds: another worker took the job over (its
    lease ran out), or it was handed back. Not a cancel: the job lives on elsewhere."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"this worker no longer holds job {job_id[:8]}")
        self.job_id = job_id


def check_transition(current: JobStatus, wanted: JobStatus) -> None:
    if wanted not in ALLOWED_TRANSITIONS[current]:
        raise IllegalTransition(current, wanted)


class Stage(enum.StrEnum):
    """The pipeline's stages, named as users see them in events."""

    RESOURCES = "resources"
    DATASET = "dataset"
    CODEGEN = "codegen"
    TRAIN = "train"
    DEPLOY = "deploy"


STAGE_STATUS: dict[Stage, JobStatus] = dict(zip(Stage, RUNNING_STAGES, strict=True))
STATUS_STAGE: dict[JobStatus, Stage] = {status: stage for stage, status in STAGE_STATUS.items()}
