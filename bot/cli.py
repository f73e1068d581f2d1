"""`trainbot` command line: run a job with live progress, and inspect or cancel jobs."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from bot.console import ConsoleDisplay
from bot.settings import SlackSettings
from bot.training_lines import (
    CHOSEN_MARK,
    importance_lines,
    leaderboard_lines,
    learned_heading,
    tried_heading,
)
from pipeline.bootstrap import Services, bootstrap, build_engine
from pipeline.budget import EXAMPLES, BudgetError, format_budget, parse_budget
from pipeline.builtin_datasets import BUILTIN_DATASETS
from pipeline.codegen.base import TaskType
from pipeline.command_log import SkippedLines, skipped_notes
from pipeline.events import RecordingSink, StoredOnly
from pipeline.limits import MIN_APP_LIFETIME
from pipeline.sandbox.base import SandboxProvider
from pipeline.service import (
    ActionRefused,
    InvalidJobRef,
    JobNotFound,
    JobRequest,
    JobService,
    LifetimeRefused,
    ServiceError,
    lifetime,
)
from pipeline.settings import Settings
from pipeline.training_report import MAX_CANDIDATES, MAX_IMPORTANCES, TrainingReport, report_of
from storage import queries
from storage.db import session_scope, upgrade
from storage.models import TrainingJob
from storage.states import TERMINAL, JobStatus

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
POLL_SECONDS = 0.2

# Piped output (scripts, logs) gets full-width lines instead of an 80-column wrap.
if TYPE_CHECKING:
    from bot.runtime import BotRuntime

_PIPED_WIDTH = None if sys.stdout.isatty() else 200
out = Console(highlight=False, soft_wrap=True, width=_PIPED_WIDTH)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trainbot", description="Train a model and serve it as a live app."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="train a model and serve it until Ctrl-C or its TTL")
    run.add_argument("--name", required=True, help="a name for the model")
    run.add_argument(
        "--dataset",
        required=True,
        help=f"a built-in set ({', '.join(BUILTIN_DATASETS)}), a CSV path or URL",
    )
    run.add_argument("--target", help="the column to predict (required for CSV data)")
    run.add_argument("--goal", default="", help="what the model should do, in plain words")
    run.add_argument(
        "--resource", action="append", default=[], metavar="URL", help="a reference link (repeat)"
    )
    run.add_argument("--task", choices=[t.value for t in TaskType], help="override inference")
    run.add_argument("--ttl", type=int, help="seconds the live app stays up (TRAINBOT_APP_TTL)")
    run.add_argument(
        "--budget",
        metavar="SECONDS",
        help=f"how long the training search may take, such as {EXAMPLES} "
        "(TRAINBOT_TRAIN_BUDGET_SECONDS)",
    )

    for name, text in (
        ("status", "show a job"),
        ("logs", "show a job's events and output"),
        ("cancel", "cancel a job or stop its app"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("job", help="job id (the first 8 characters are enough)")
    jobs = commands.add_parser("jobs", help="list recent jobs")
    jobs.add_argument("--limit", type=int, default=20)

    serve = commands.add_parser("serve", help="serve the Slack bot over HTTP")
    serve.add_argument("--port", type=int, help="port to listen on (default: $PORT or 3000)")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--no-worker", action="store_true", help="do not run jobs in this process")
    socket = commands.add_parser("socket", help="run the Slack bot over Socket Mode")
    socket.add_argument("--no-worker", action="store_true", help="do not run jobs in this process")
    commands.add_parser("worker", help="run queued jobs (no HTTP); SIGTERM drains it")

    db = commands.add_parser("db", help="database maintenance")
    db.add_argument("action", choices=["upgrade"])

    manifest = commands.add_parser(
        "manifest", help="print the Slack app manifest (JSON) to paste at api.slack.com/apps"
    )
    mode = manifest.add_mutually_exclusive_group(required=True)
    mode.add_argument("--socket", action="store_true", help="for `trainbot socket` (no URL)")
    mode.add_argument("--url", help="for `trainbot serve`: its public https address")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "manifest":  # needs no settings, database or tokens
        return cmd_manifest(args)
    try:
        settings = Settings()
    except ValidationError as error:
        err.print(f"Configuration error: {_first_line(error)}", markup=False)
        return EXIT_USAGE
    handlers = {
        "run": cmd_run,
        "status": cmd_status,
        "logs": cmd_logs,
        "cancel": cmd_cancel,
        "jobs": cmd_jobs,
        "db": cmd_db,
        "serve": cmd_serve,
        "socket": cmd_socket,
        "worker": cmd_worker,
    }
    try:
        return handlers[args.command](args, settings)
    except (InvalidJobRef, JobNotFound) as error:
        err.print(f"{error}. `trainbot jobs` lists recent jobs.", markup=False)
        return EXIT_USAGE
    except ServiceError as error:
        err.print(_sentence(error), markup=False)
        return EXIT_USAGE
    except (ValueError, ValidationError) as error:  # settings that do not fit together
        err.print(f"Configuration error: {_first_line(error)}", markup=False)
        return EXIT_USAGE
    except SQLAlchemyError as error:
        err.print(
            f"The database at DATABASE_URL could not be used: {_first_line(error)}", markup=False
        )
        return EXIT_FAILED


def _sentence(error: ServiceError) -> str:
    text = str(error)
    return f"{text[:1].upper()}{text[1:]}."


def _first_line(error: Exception) -> str:
    if isinstance(error, ValidationError):  # e.g. "TRAINBOT_APP_TTL: Input should be ..."
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
    text = str(getattr(error, "orig", None) or error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    budget, problem = run_budget(args.budget, settings)
    if problem:  # before anything starts: a typo costs no sandbox
        err.print(problem, markup=False)
        return EXIT_USAGE
    with ConsoleDisplay(out) as display:
        services = bootstrap(settings, sink=display)
        ttl, problem = run_lifetime(args.ttl, settings.app_ttl, services.deps.sandboxes)
        if problem:
            err.print(problem, markup=False)
            if args.ttl is not None:
                return EXIT_USAGE
        request = JobRequest(
            name=args.name,
            dataset_source=args.dataset,
            goal=args.goal,
            target=args.target,
            task=args.task,
            resources=args.resource,
            requested_by="cli",
            origin="cli",
            ttl_seconds=ttl,
            time_budget_seconds=budget,
        )
        jobs = JobService.of(services)
        job = jobs.submit(request).job
        # This process runs its own job only: it may read files on this machine, and a job
        # queued from Slack is for the bot's workers.
        services.worker.start(only=[job.id])
        out.print(f"Job {job.short_id} queued for '{args.name}' on {args.dataset}", markup=False)
        try:
            job = _wait(services, job.id, until={JobStatus.LIVE, *TERMINAL})
        except KeyboardInterrupt:
            _cancel_quietly(jobs, job.id)
            services.worker.shutdown()
            err.print("Cancelled.")
            return EXIT_INTERRUPTED
    if job.job_status != JobStatus.LIVE:
        services.worker.shutdown()
        err.print(
            f"Job {job.short_id} {job.status}: {job.error or 'no reason recorded'}", markup=False
        )
        err.print(f"Full log: trainbot logs {job.short_id}", markup=False)
        return EXIT_FAILED
    _print_live(job)
    return _serve_until_done(services, job)


def run_budget(text: str | None, settings: Settings) -> tuple[int | None, str | None]:
    """Seconds of training search `--budget` asks for (None: not given, the default), or what
    is wrong with it, naming the range this machine's settings allow."""
    if text is None:
        return None, None
    try:
        seconds = parse_budget(text)
    except BudgetError as error:
        problem = str(error)
    else:
        problem = settings.train_budgets.problem(seconds) or ""
        if not problem:
            return seconds, None
    return None, f"--budget: {problem}."


def run_lifetime(
    ttl: int | None, app_ttl: int, provider: SandboxProvider
) -> tuple[int, str | None]:
    """Seconds the app of `trainbot run` stays up, and what to say about the provider's cap.

    A --ttl past the cap is an error (the message says so); TRAINBOT_APP_TTL past it is
    capped, with a note.
    """
    cap = provider.max_lifetime
    try:
        life = lifetime(ttl, default=app_ttl, max_lifetime=cap, provider=provider.name)
    except LifetimeRefused as refused:
        if refused.most is None:
            return refused.asked, f"--ttl must be at least {MIN_APP_LIFETIME} seconds"
        return refused.asked, f"--ttl {ttl} is too long: {_most(provider)}. Give a shorter --ttl."
    if life.capped_from is None:
        return life.seconds, None
    return life.seconds, (
        f"TRAINBOT_APP_TTL is {app_ttl} seconds, but {_most(provider)}; "
        f"this app stays up {life.seconds}."
    )


def _most(provider: SandboxProvider) -> str:
    # The cap's setting is named after the provider (TRAINBOT_E2B_MAX_LIFETIME for "e2b").
    field = Settings.model_fields.get(f"{provider.name}_max_lifetime")
    setting = f" ({field.alias})" if field is not None and field.alias else ""
    return (
        f"the {provider.name} sandbox keeps an app up for at most "
        f"{provider.max_lifetime} seconds{setting}"
    )


def _serve_until_done(services: Services, job: TrainingJob) -> int:
    # SIGTERM (e.g. from a process manager) stops the app as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        job = _wait(services, job.id, until=TERMINAL)
        out.print(f"The live app has stopped: {job.status}.")
        services.worker.shutdown()
        return 0
    except KeyboardInterrupt:
        services.worker.expire(job.id, reason="stopped from the command line")
        services.worker.shutdown()
        out.print("\nStopped the live app.")
        return 0


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def _wait(
    services: Services, job_id: str, *, until: set[JobStatus] | frozenset[JobStatus]
) -> TrainingJob:
    while True:
        with session_scope(services.engine) as session:
            job = queries.get_job(session, job_id=job_id)
        assert job is not None
        if job.job_status in until:
            return job
        time.sleep(POLL_SECONDS)


def _cancel_quietly(jobs: JobService, job_id: str) -> None:
    try:
        jobs.cancel(job_id, by="cli")
    except ActionRefused:  # it ended meanwhile
        pass


def _print_live(job: TrainingJob) -> None:
    metrics = job.metrics or {}
    out.print()
    if metrics:
        out.print(
            f"{metrics.get('model', 'model')}: test {metrics['metric']} {metrics['score']:.3f} "
            f"(baseline {metrics['baseline']:.3f})",
            markup=False,
        )
    out.print(f"Live app: {job.deployment_url}", markup=False)
    if job.expires_at:
        out.print(
            f"It stays up until {job.expires_at:%H:%M:%S} UTC or Ctrl-C. "
            f"Try: curl {job.deployment_url}schema",
            markup=False,
        )
    sys.stdout.flush()


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    found = _reader(settings).status(args.job, with_events=False)
    job = found.job
    rows = [
        ("job", job.id),
        ("model", found.model_name or "?"),
        ("status", job.status),
        ("stage", job.stage or "-"),
        ("data set", job.dataset_source),
        ("target", job.target_column or "-"),
        ("task", job.task_type or "-"),
        ("budget", _budget(job, settings)),
        ("elapsed", _elapsed(job)),
    ]
    if job.metrics:
        rows.append(
            (
                "metric",
                f"{job.metrics['metric']} {job.metrics['score']:.3f} "
                f"(baseline {job.metrics['baseline']:.3f})",
            )
        )
    if job.deployment_url:
        rows.append(
            ("live app" if job.job_status == JobStatus.LIVE else "app was", job.deployment_url)
        )
    if job.error:
        rows.append(("reason", job.error))
    for key, value in rows:
        out.print(f"{key:>9}  {value}", markup=False)
    return 0


def cmd_jobs(args: argparse.Namespace, settings: Settings) -> int:
    page = _reader(settings).list(limit=args.limit, with_events=False)
    if not page.items:
        out.print("No jobs yet. Start one with: trainbot run --name demo --dataset iris")
        return 0
    table = Table("id", "model", "status", "stage", "data set", "created", "live app")
    for item in page.items:
        job = item.job
        table.add_row(
            job.short_id,
            item.model_name or "?",
            job.status,
            job.stage or "-",
            job.dataset_source[:40],
            f"{job.created_at:%Y-%m-%d %H:%M}",
            job.deployment_url if job.job_status == JobStatus.LIVE else "",
        )
    out.print(table)
    return 0


def cmd_logs(args: argparse.Namespace, settings: Settings) -> int:
    events = _reader(settings).logs(args.job).events
    for event in events:
        prefix = "   " if event.kind == "log" else f"{event.kind:>8}"
        out.print(f"{event.at:%H:%M:%S} {prefix} [{event.stage}] {event.message}", markup=False)
        detail = event.data.get("detail") if isinstance(event.data, dict) else None
        if detail:
            out.print(
                "\n".join(f"{'':>22}{line}" for line in str(detail).splitlines()), markup=False
            )
    report = report_of(events)
    if report is not None:
        _print_report(report)
    _print_log_files(skipped_notes(events))
    return 0


def _print_log_files(notes: list[SkippedLines]) -> None:
    """Where the output lines between the stored head and tail are: the log file the job
    wrote on the disk of the worker that ran it (this command may run elsewhere)."""
    for note in notes:
        kept = "all of them" if note.complete else "cut at its size cap"
        here = "" if Path(note.log_file).exists() else " on the machine that ran the job"
        out.print(
            f"\n{note.skipped:,} of {note.lines:,} output lines are not shown above; the "
            f"full output ({kept}) is in {note.log_file}{here}",
            markup=False,
        )


def _print_report(report: TrainingReport) -> None:
    """What the latest training tried and learned: every candidate and importance kept."""
    tried = leaderboard_lines(report, MAX_CANDIDATES)
    if tried:
        chosen = f" ({CHOSEN_MARK} chosen)" if any(t.startswith(CHOSEN_MARK) for t in tried) else ""
        out.print(f"\nWhat it tried: {tried_heading(report)}{chosen}", markup=False)
        out.print("\n".join(f"  {line}" for line in tried), markup=False)
    learned = importance_lines(report, MAX_IMPORTANCES)
    if learned:
        out.print(f"\nWhat it learned: {learned_heading(report)}", markup=False)
        out.print("\n".join(f"  {line}" for line in learned), markup=False)


def cmd_cancel(args: argparse.Namespace, settings: Settings) -> int:
    services = bootstrap(settings, sink=RecordingSink())
    job = JobService.of(services).cancel(args.job, by="cli")
    out.print(f"Job {job.short_id} cancelled.", markup=False)
    return 0


def _reader(settings: Settings) -> JobService:
    # No providers are built, so `status`, `jobs` and `logs` answer wherever the database does.
    return JobService.reader(build_engine(settings))


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from bot.web import make_server

    started = _start_bot(args, settings, mode="http")
    if started is None:
        return EXIT_USAGE
    runtime, slack = started
    port = args.port or slack.port
    server = make_server(runtime, host=args.host, port=port)
    out.print(f"TrainBot listening on http://{args.host}:{port} (Slack: /slack/events)")
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        runtime.stop()
    return 0


def cmd_socket(args: argparse.Namespace, settings: Settings) -> int:
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    started = _start_bot(args, settings, mode="socket")
    if started is None:
        return EXIT_USAGE
    runtime, slack = started
    handler = SocketModeHandler(runtime.app, app_token=slack.app_token)
    try:
        handler.connect()
        out.print("TrainBot connected over Socket Mode")
        threading.Event().wait()  # the handler's threads do the work; wait for Ctrl-C
    except KeyboardInterrupt:
        pass
    finally:
        handler.close()
        runtime.stop()
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    """Runs jobs until SIGTERM or Ctrl-C, then drains: running jobs get TRAINBOT_DRAIN_SECONDS
    to finish and the rest go back to the queue for other workers."""
    from bot.runtime import settle_heap, slack_sources
    from bot.slack_client import build_web_client

    slack = SlackSettings()
    engine = build_engine(settings)
    # Jobs from Slack may read files uploaded there: with the workspace's token, when this
    # process has Slack's settings (SLACK_BOT_TOKEN, or the OAuth client for installs).
    sources = slack_sources(slack, engine, build_web_client(slack))
    _forget_slack_secrets()
    services = bootstrap(settings, sink=StoredOnly(), engine=engine, sources=sources)
    signal.signal(signal.SIGTERM, _interrupt)
    services.worker.start()
    settle_heap()
    out.print(f"TrainBot worker {services.worker.id} is waiting for jobs", markup=False)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        out.print("Stopping: finishing or handing back running jobs", markup=False)
        services.worker.drain()
    return 0


def _forget_slack_secrets() -> None:
    """From here the bot token lives only in the settings and the WebClients built from them.
    Left in the environment, Bolt's App reads it again and warns that it goes unused beside
    the client (slack_bolt/app/app.py); and no child process (sandboxed code) may inherit
    it. The OAuth client id and secret likewise: with both in the environment Bolt's App
    turns on its own OAuth flow, with file stores in ./data, even beside a bot token
    (bot/app.py builds ours)."""
    for name in ("SLACK_BOT_TOKEN", "SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET"):
        os.environ.pop(name, None)


def _start_bot(
    args: argparse.Namespace, settings: Settings, *, mode: str
) -> tuple[BotRuntime, SlackSettings] | None:
    """The bot's runtime, started, or None after saying which variables are missing."""
    from bot.runtime import build_runtime, settle_heap

    slack = SlackSettings()
    missing = slack.missing(mode)
    if missing:
        err.print(f"Set {' and '.join(missing)} first (see the README's Slack setup).")
        return None
    _forget_slack_secrets()
    runtime = build_runtime(settings, slack)
    signal.signal(signal.SIGTERM, _interrupt)
    runtime.start(worker=not args.no_worker)
    settle_heap()
    return runtime, slack


def cmd_manifest(args: argparse.Namespace) -> int:
    from bot.manifest import ManifestError, app_manifest

    try:
        manifest = app_manifest(socket=args.socket, url=args.url)
    except ManifestError as error:
        err.print(f"Cannot build the manifest: {error}", markup=False)
        return EXIT_USAGE
    # Plain JSON on stdout (no rich wrapping), so it can be piped or pasted as it is.
    sys.stdout.write(json.dumps(manifest, indent=2) + "\n")
    return 0


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    upgrade(build_engine(settings, migrate=False))
    out.print("Database is up to date.")
    return 0


def _budget(job: TrainingJob, settings: Settings) -> str:
    if job.time_budget_seconds is not None:
        return f"{format_budget(job.time_budget_seconds)} of training search"
    default = format_budget(settings.train_budgets.default)
    return f"the default ({default} of training search here)"


def _elapsed(job: TrainingJob) -> str:
    if job.started_at is None:
        return "not started"
    end = job.finished_at or datetime.now(UTC)
    seconds = int((end - job.started_at).total_seconds())
    return f"{seconds // 60}m {seconds % 60:02d}s"
