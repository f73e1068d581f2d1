"""Runs one job through its stages, recording every state change and event.

The runner owns sequencing only; each stage lives in its own module under `stages/`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from pipeline.budget import format_budget
from pipeline.cancel import CancelToken
from pipeline.codegen.base import CodeFailure, CodeGenerator, GeneratedCode, TaskType
from pipeline.codegen.template import TemplateGenerator
from pipeline.command_log import TRAIN_LOG, CommandLog
from pipeline.errors import CodegenError, DeployError, JobCancelled, PipelineError, TrainingError
from pipeline.events import EventKind, ProgressSink
from pipeline.expiry import early_stop_warning
from pipeline.netguard import UrlGuard
from pipeline.quoting import quote
from pipeline.recorder import JobRecorder
from pipeline.sandbox.base import Sandbox, SandboxProvider
from pipeline.settings import Settings
from pipeline.sources import ExternalSource
from pipeline.stages.codegen import CodeAuthor
from pipeline.stages.dataset import LoadedDataset, load_dataset
from pipeline.stages.deploy import Deployment, deploy_app
from pipeline.stages.resources import fetch_resources
from pipeline.stages.train import install_requirements, run_training, upload_job_files
from pipeline.training_report import clean_importances, clean_metrics
from storage import queries
from storage.db import session_scope
from storage.models import TrainingJob
from storage.states import STAGE_STATUS, IllegalTransition, JobStatus, NotHeld, Stage

log = logging.getLogger(__name__)

JOB = "job"  # the stage name of events about the whole job


@dataclass
class PipelineDeps:
    """Everything a job needs, built once by the bootstrap."""

    engine: Engine
    settings: Settings
    codegen: CodeGenerator
    sandboxes: SandboxProvider
    guard: UrlGuard
    sink: ProgressSink
    sources: dict[str, ExternalSource] = field(default_factory=dict)
    # Used when `codegen` cannot be reached or its code keeps failing (the offline template).
    fallback_codegen: CodeGenerator | None = None


def codegen_for_sandbox(deps: PipelineDeps) -> tuple[CodeGenerator, str]:
    """The generator whose code may run in this job's sandbox, and what to tell the user.

    Code an LLM wrote runs only where it can dial nothing (not the host's database, not this
    bot's port, not the internet), unless the operator allowed otherwise; the template's
    code is ours and runs under any isolation.
    """
    codegen, sandboxes = deps.codegen, deps.sandboxes
    if codegen.name == TemplateGenerator.name or sandboxes.isolates_network:
        return codegen, ""
    if deps.settings.allow_unisolated_code:
        return codegen, (
            f"{codegen.name}'s code runs without network isolation "
            "(TRAINBOT_ALLOW_UNISOLATED_CODE=1): it can reach this machine's network and "
            "services while it runs"
        )
    refusal = (
        f"{codegen.name}'s code does not run here: the {sandboxes.name} sandbox on this machine "
        "cannot keep code off the host's network and services (databases, this bot)"
    )
    opt_in = "Set TRAINBOT_ALLOW_UNISOLATED_CODE=1 to run it anyway"
    if deps.fallback_codegen is None:
        raise CodegenError(f"{refusal}. {opt_in}")
    return deps.fallback_codegen, (
        f"{refusal}; using the offline {deps.fallback_codegen.name} instead. {opt_in}"
    )


class JobRunner:
    def __init__(self, deps: PipelineDeps) -> None:
        self.deps = deps

    def run(self, job_id: str, token: CancelToken, *, owner: str) -> Sandbox | None:
        """Runs a queued job that worker `owner` claimed. Returns the sandbox serving the live
        app, or None.

        Every change is made as `owner`. A run that finds the job cancelled (the canceller
        recorded it and its event), handed back (the worker records that) or held by another
        worker (storage's NotHeld: it was taken over) only cleans up: not its job any more.
        """
        job = self._load(job_id)
        if job is None or job.job_status != JobStatus.QUEUED or job.worker_id != owner:
            return None  # cancelled before it started, or not ours
        recorder = JobRecorder(self.deps.engine, job_id, self.deps.sink)
        attempt = _Attempt(self.deps, job, recorder, token, owner)
        try:
            return attempt.run()
        except (JobCancelled, NotHeld):
            attempt.cleanup()
        except PipelineError as error:
            attempt.cleanup()
            if not token.is_cancelled():  # a stopped command can surface as any error
                self._fail(recorder, owner, attempt.stage, error.message, error.detail)
        except Exception as error:  # a bug of ours: the user gets a plain reason, the log the trace
            log.exception("job %s crashed", job_id)
            attempt.cleanup()
            reason = f"an internal error stopped the job ({type(error).__name__})"
            self._fail(recorder, owner, attempt.stage, reason, "")
        return None

    def _load(self, job_id: str) -> TrainingJob | None:
        with session_scope(self.deps.engine) as session:
            return queries.get_job(session, job_id=job_id)

    def _fail(
        self, recorder: JobRecorder, owner: str, stage: str, reason: str, detail: str
    ) -> None:
        try:
            with session_scope(self.deps.engine) as session:
                queries.transition(
                    session,
                    job_id=recorder.job_id,
                    to=JobStatus.FAILED,
                    error=reason,
                    owner=owner,
                )
                # In the same transaction: a reader that sees "failed" also sees why.
                event = recorder.emit_in(
                    session, EventKind.FAILED, stage, reason, status="failed", detail=detail
                )
        except (IllegalTransition, NotHeld):
            return  # cancelled or taken over meanwhile: that ending wins
        recorder.announce(event)


class _Attempt:
    """One pass through the stages for one job."""

    def __init__(
        self,
        deps: PipelineDeps,
        job: TrainingJob,
        recorder: JobRecorder,
        token: CancelToken,
        owner: str,
    ) -> None:
        self.deps = deps
        self.owner = owner
        self.job = job
        self.recorder = recorder
        self.token = token
        self.stage = Stage.RESOURCES.value
        self.sandbox: Sandbox | None = None
        self.sandbox_started = datetime.now(UTC)
        self.expires_at: datetime | None = None
        self.timings: dict[str, float] = {}
        self.train_logs: dict[str, str] = {}  # artifact name -> path, one per training try
        self.workdir = Path(deps.settings.data_dir) / "jobs" / job.id

    def run(self) -> Sandbox:
        settings = self.deps.settings
        emit = self.recorder.emit
        self.workdir.mkdir(parents=True, exist_ok=True)

        with self._stage(Stage.RESOURCES, "Fetching reference resources"):
            fetched = fetch_resources(self.job.resources, guard=self.deps.guard)
            for warning in fetched.warnings:
                emit(EventKind.WARNING, Stage.RESOURCES, warning)
            self._progress(
                f"{len(fetched.resources)} of {len(self.job.resources)} resources fetched"
            )

        with self._stage(Stage.DATASET, "Loading and checking the data"):
            dataset = load_dataset(
                self.job.dataset_source,
                target=self.job.target_column,
                guard=self.deps.guard,
                max_bytes=settings.max_dataset_mb * 1024 * 1024,
                name=self._model_name(),
                goal=self.job.goal,
                task=TaskType(self.job.task_type) if self.job.task_type else None,
                workdir=self.workdir,
                allow_local_files=self.job.origin == "cli",
                external=self.deps.sources,
                workspace=(self.job.team_id, self.job.enterprise_id),
            )
            for warning in dataset.warnings:
                emit(EventKind.WARNING, Stage.DATASET, warning)
            dataset = self._with_budget(dataset)
            spec = dataset.spec
            self._update(task_type=spec.task.value, target_column=spec.target)
            self._progress(
                f"{dataset.source_description}: {spec.task.value} of {quote(spec.target)}, "
                f"{len(spec.columns) - 1} feature columns",
                task=spec.task.value,
                target=spec.target,
                rows=spec.n_rows,
            )

        codegen, isolation_note = codegen_for_sandbox(self.deps)
        author = CodeAuthor(
            codegen,
            fallback=self.deps.fallback_codegen,
            max_attempts=settings.codegen_attempts,
            say=lambda kind, message: emit(kind, Stage.CODEGEN, message),
        )
        failure: CodeFailure | None = None
        while True:
            with self._stage(Stage.CODEGEN, "Writing the training script and the app"):
                if isolation_note:
                    emit(EventKind.WARNING, Stage.CODEGEN, isolation_note)
                    isolation_note = ""
                code = author.write(spec, fetched.resources, failure)
                self._update(codegen_provider=author.name)
                self._progress(f"{author.name} wrote {', '.join(sorted(code.files))}")
            try:
                metrics = self._train(code, dataset)
                deployment = self._deploy(dataset)
                break
            except (TrainingError, DeployError) as error:
                self._kill_sandbox()
                if not author.can_retry():
                    raise
                failure = CodeFailure(stage=self.stage, message=error.message, log=error.detail)
                emit(EventKind.WARNING, self.stage, f"{error.message}; trying again")
        expires_at = self.expires_at  # when the provider will really stop the app
        assert expires_at is not None
        try:
            with session_scope(self.deps.engine) as session:
                queries.update_job(
                    session, job_id=self.job.id, owner=self.owner, stage_timings=self.timings
                )
                queries.mark_live(
                    session,
                    job_id=self.job.id,
                    url=deployment.url,
                    expires_at=expires_at,
                    owner=self.owner,
                )
        except IllegalTransition as error:  # cancelled while the app was being verified
            raise JobCancelled("cancelled") from error
        emit(
            EventKind.FINISHED,
            JOB,
            f"live at {deployment.url}",
            status=JobStatus.LIVE.value,
            url=deployment.url,
            metrics=metrics,
            expires_at=expires_at.isoformat(),
        )
        assert self.sandbox is not None
        return self.sandbox

    def _train(self, code: GeneratedCode, dataset: LoadedDataset) -> dict[str, Any]:
        settings = self.deps.settings
        with self._stage(Stage.TRAIN, "Training the model"):
            self.sandbox_started = datetime.now(UTC)
            self.sandbox = self.deps.sandboxes.create(
                job_id=self.job.id, timeout=settings.train_timeout
            )
            self._update(sandbox_provider=self.deps.sandboxes.name, sandbox_id=self.sandbox.id)
            self._progress(f"sandbox {self.sandbox.id}: {self.sandbox.isolation}")
            # Packages first: the user's data is not in the sandbox while pip has the network.
            install_requirements(self.sandbox, code.requirements, timeout=settings.train_timeout)
            upload_job_files(self.sandbox, code, dataset.spec, dataset.data_path)
            budget = dataset.spec.time_budget_seconds
            self._progress(
                f"training budget: {format_budget(budget)} "
                f"(time limit {format_budget(settings.train_timeout)})",
                time_budget_seconds=budget,
            )
            # The whole output goes to a file beside the artifacts, its head and tail to
            # job_events; the file is written however training ends.
            log_file = self._train_log_file()
            self.train_logs[log_file.name] = str(log_file)
            with CommandLog(self.recorder, Stage.TRAIN, log_file) as output:
                outcome = run_training(
                    self.sandbox,
                    timeout=settings.train_timeout,
                    artifacts_dir=self.workdir / "artifacts",
                    on_output=output.line,
                    should_stop=self.token.is_cancelled,
                )
            # What train.py tried and learned is optional and may be malformed (LLM code):
            # only its valid, capped form is stored and published.
            metrics = clean_metrics(outcome.metrics)
            self._update(metrics=metrics, artifacts={**outcome.artifacts, **self.train_logs})
            if metrics["score"] <= metrics["baseline"]:
                self.recorder.emit(
                    EventKind.WARNING,
                    Stage.TRAIN,
                    f"the model's {metrics['metric']} {metrics['score']:.3f} does not beat the "
                    f"baseline's {metrics['baseline']:.3f}; the data may not hold enough signal",
                )
            for warning in metrics.get("warnings", []):
                self.recorder.emit(EventKind.WARNING, Stage.TRAIN, warning)
            # The report's one event: the thread, `trainbot logs` and /train logs read it.
            self._progress(
                f"test {metrics['metric']} {metrics['score']:.3f} "
                f"(baseline {metrics['baseline']:.3f})",
                metrics=metrics,
                importances=clean_importances(outcome.schema),
            )
        return metrics

    def _train_log_file(self) -> Path:
        """train.log, or train-2.log for a second try with new code: each try its own."""
        tries = len(self.train_logs) + 1
        name = TRAIN_LOG if tries == 1 else TRAIN_LOG.replace(".", f"-{tries}.", 1)
        return self.workdir / "artifacts" / name

    def _with_budget(self, dataset: LoadedDataset) -> LoadedDataset:
        """The data set's spec with the job's training budget: the submitter's, within what
        this worker's TRAINBOT_TRAIN_TIMEOUT leaves room for (the timeout is the limit, so a
        budget is never granted that the timeout would cut short)."""
        budget, lowered = self.deps.settings.train_budgets.granted(self.job.time_budget_seconds)
        if lowered:
            self.recorder.emit(EventKind.WARNING, Stage.DATASET, lowered)
        return replace(dataset, spec=replace(dataset.spec, time_budget_seconds=float(budget)))

    def _deploy(self, dataset: LoadedDataset) -> Deployment:
        assert self.sandbox is not None
        with self._stage(Stage.DEPLOY, "Starting and verifying the live app"):
            deployment = deploy_app(
                self.sandbox,
                task=dataset.spec.task,
                classes=dataset.spec.classes,
                holdout=dataset.holdout,
                holdout_targets=dataset.holdout_targets,
                start_timeout=self.deps.settings.app_start_timeout,
                should_stop=self.token.is_cancelled,
            )
            check = deployment.verification
            self._progress(
                f"verified: the app predicted {check.rows} held-out rows "
                f"({check.correct} of {check.rows} right)",
                predictions=check.predictions,
            )
            self._extend_for_ttl()
        return deployment

    def _extend_for_ttl(self) -> None:
        """Keep the app up for the job's lifetime; record and explain when it stops sooner."""
        assert self.sandbox is not None
        ttl = self.job.ttl_seconds
        asked_end = datetime.now(UTC) + timedelta(seconds=ttl)
        self.expires_at = self.sandbox.extend(ttl)
        warning = early_stop_warning(
            provider=self.deps.sandboxes.name,
            max_lifetime=self.deps.sandboxes.max_lifetime,
            started=self.sandbox_started,
            asked=ttl,
            asked_end=asked_end,
            real_end=self.expires_at,
        )
        if warning is not None:
            self.recorder.emit(EventKind.WARNING, Stage.DEPLOY, warning)

    def _kill_sandbox(self) -> None:
        if self.sandbox is not None:
            try:
                self.sandbox.kill()
            except Exception:  # noqa: BLE001 - cleanup must not hide the real failure
                log.exception("could not kill sandbox %s", self.sandbox.id)
            self.sandbox = None

    def cleanup(self) -> None:
        self._kill_sandbox()
        try:
            self._update(stage_timings=self.timings)
        except NotHeld:
            pass  # another worker runs the job now; its timings are its own

    @contextmanager
    def _stage(self, stage: Stage, title: str) -> Iterator[None]:
        if self.token.is_cancelled():
            raise JobCancelled("cancelled")
        self.stage = stage.value
        try:
            with session_scope(self.deps.engine) as session:
                queries.transition(
                    session, job_id=self.job.id, to=STAGE_STATUS[stage], owner=self.owner
                )
        except IllegalTransition as error:
            raise JobCancelled("cancelled") from error  # only a cancel moves a running job aside
        self.recorder.emit(EventKind.STARTED, stage, title, status=STAGE_STATUS[stage].value)
        started = time.monotonic()
        yield
        self.timings[stage.value] = round(time.monotonic() - started, 3)
        self.recorder.emit(EventKind.FINISHED, stage, title, seconds=self.timings[stage.value])

    def _progress(self, message: str, **data: object) -> None:
        self.recorder.emit(EventKind.PROGRESS, self.stage, message, **data)

    def _update(self, **fields: object) -> None:
        with session_scope(self.deps.engine) as session:
            queries.update_job(session, job_id=self.job.id, owner=self.owner, **fields)

    def _model_name(self) -> str:
        with session_scope(self.deps.engine) as session:
            model = queries.get_model(session, model_id=self.job.model_id)
            return model.name if model else self.job.id[:8]
