"""One worker drives hundreds of remote jobs, and Slack stays quick and quiet (issue 11).

Everything runs in this one process, as `trainbot serve` runs it: the Bolt app behind waitress
(bot/web.py), the worker and the Slack notifier (tests/support/slack_bot.py running_bot), on a
fresh PostgreSQL database, against the fake Slack Web API with its rate limits
(tests/fakes/slack_api.py). Sandboxes are bench/remote_standin.py's: each waits as E2B does
(1 s to create, 50 ms a call, `train_seconds` of training) and does no work, and one shared
server in a process of its own answers for every live app at once.

`jobs` jobs are submitted through Slack's real path, signed modal submissions spread over
`channels` channels and five people, with no per-workspace or per-person limit and a slot for
every job. While they train, the second benchmark (bench/fleet_acks.py) fires signed `/train`
commands and modal submissions at a second copy of the bot in this process (its own database
and fake Slack, no worker: its jobs stay queued, so they add no jobs to the fleet) and at a
minimal Bolt app that only acks.

Rows: every job live; the process's peak RSS; live -> live-app button in Slack (p95); Slack
calls per live job (max, mean, and what they are); 429s left unretried; card edits closer than
a second; the ack p99 at 50 at once, absolute and against the minimal app.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from bench.cases import Row
from bench.fleet_acks import (
    Level,
    RemoteSlack,
    Requests,
    measure,
    minimal_app,
    percentile,
    serve,
    summary,
)
from bench.fleet_slack import (
    Card,
    attribute,
    edit_gaps,
    first_button_at,
    mean_counts,
    per_kind_table,
    unretried_429s,
)
from bench.remote_standin import AppServer, WaitingProvider, Waits
from bench.workers import require_postgres
from bot.runtime import build_runtime, settle_heap
from bot.settings import SlackSettings
from bot.web import make_server
from pipeline.events import EventKind
from pipeline.netguard import UrlGuard
from storage import queries
from storage.db import make_engine, session_scope, upgrade
from storage.models import TrainingJob
from storage.states import JobStatus
from tests.fakes.slack_api import Call, FakeSlack
from tests.support.databases import fresh_postgres_database
from tests.support.pipeline import make_settings
from tests.support.slack_bot import API_TOKEN, BotHarness, fake_resolver, running_bot
from tests.support.slack_payloads import SIGNING_SECRET, SlackSender, train_form, view_submission

RSS_TARGET_MB = 500.0
BUTTON_P95_TARGET = 5.0  # seconds from going live to the live-app button in Slack
CALLS_PER_JOB_TARGET = 12
MIN_EDIT_GAP = 1.0  # seconds between two edits of one card
ACK_P99_TARGET = 0.250
ACK_RATIO_TARGET = 2.0
USERS = [f"U0FLEET{n}" for n in range(5)]
SUBMITTERS = 10  # threads posting the fleet's submissions
ENDED = {JobStatus.LIVE, JobStatus.FAILED, JobStatus.CANCELLED}
TRAINING_OR_LATER = {JobStatus.TRAINING, JobStatus.DEPLOYING, *ENDED}


@dataclass
class Sampler:
    """The process's resident memory and thread count, sampled while the fleet runs."""

    every: float = 0.25
    peak_rss_mb: float = 0.0
    peak_threads: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    @contextmanager
    def running(self) -> Iterator[Sampler]:
        thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(2)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.peak_rss_mb = max(self.peak_rss_mb, status_mb("VmRSS"))
            self.peak_threads = max(self.peak_threads, threading.active_count())


def status_mb(field_name: str) -> float:
    """A memory figure of this process from /proc/self/status (proc(5)), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) / 1024
    raise LookupError(field_name)


@dataclass
class Observed:
    """What one run saw, for the rows."""

    jobs: list[TrainingJob]
    live_at: dict[str, float]  # job id -> when it went live (monotonic, from its live event)
    calls: list[Call]
    rss_before_mb: float
    peak_rss_mb: float
    peak_threads: int
    peak_pool: int
    pool_waits: list[float]  # seconds a probe waited for a connection (with its ping)
    drained_after: float | None  # seconds from the last job live to Slack idle (None: never)
    ack_levels: list[Level]
    submit_seconds: float
    submissions: list[float | None]  # each fleet submission's ack time (None: not acked)
    training_during_acks: tuple[int, int]
    ack_limited: Counter[str]  # 429s the ack bot's and the minimal app's Slack answered


def fleet(
    root: Path,
    *,
    jobs: int = 200,
    channels: int = 10,
    train_seconds: float = 30.0,
    ack_samples: int = 60,
    drain_timeout: float = 90.0,
) -> list[Row]:
    """The issue's two benchmarks in one run; at jobs=10, channels=2, train_seconds=2 a smoke."""
    require_postgres()
    root.mkdir(parents=True)
    # waitress warns of every request that waits for one of its threads: at 50 at once,
    # hundreds of lines that say what the ack rows measure.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    return rows(_run(root, jobs, channels, train_seconds, ack_samples, drain_timeout), jobs)


def _run(
    root: Path, jobs: int, channels: int, train_seconds: float, samples: int, drain: float
) -> Observed:
    channel_ids = [f"C0FLEET{n:02d}" for n in range(channels)]
    with ExitStack() as stack:
        engine = _engine(stack.enter_context(fresh_postgres_database()))
        ack_engine = _engine(stack.enter_context(fresh_postgres_database()))
        apps = stack.enter_context(AppServer())
        slack = stack.enter_context(FakeSlack())
        ack_slack = stack.enter_context(FakeSlack())
        provider = WaitingProvider(apps, Waits(train=train_seconds))
        overrides = {
            "TRAINBOT_MAX_CONCURRENT_JOBS": jobs,
            "TRAINBOT_MAX_JOBS_PER_WORKSPACE": 0,
            "TRAINBOT_MAX_JOBS_PER_USER": 0,
            "TRAINBOT_APP_TTL": 3600,  # no expiry notice comes due during the run
            "TRAINBOT_TRAIN_TIMEOUT": max(300, int(train_seconds) + 120),
            "TRAINBOT_APP_START_TIMEOUT": 30,
        }
        pool_peak = _PoolPeak(engine)
        rss_before = status_mb("VmRSS")
        sampler = stack.enter_context(Sampler().running())
        stack.enter_context(pool_peak.running())
        bot = stack.enter_context(
            running_bot(
                engine, root / "fleet", slack, settings_overrides=overrides, sandboxes=provider
            )
        )
        settle_heap()  # as `trainbot serve` does once it has started
        started = time.monotonic()
        submissions = _submit(bot, channel_ids, jobs)
        submit_seconds = time.monotonic() - started
        _wait_statuses(engine, jobs, TRAINING_OR_LATER, timeout=120)
        with (
            _ack_bot(root, ack_engine, ack_slack) as (bot_url, requests),
            serve(minimal_app(ack_slack.token, requests.api_url)) as reference_url,
        ):
            training_before = _count(engine, {JobStatus.TRAINING})
            levels = measure(bot_url, reference_url, requests, samples=samples)
            training_after = _count(engine, {JobStatus.TRAINING})
        _wait_statuses(engine, jobs, ENDED, timeout=train_seconds + 180)
        found = _jobs(engine, jobs)
        live_at = _live_times(engine, found)
        last_live = max(live_at.values(), default=time.monotonic())
        drained = bot.runtime.ctx.notifier.wait_idle(drain)
        drained_after = time.monotonic() - last_live if drained else None
        calls = list(slack.calls)
        return Observed(
            jobs=_jobs(engine, jobs),
            live_at=live_at,
            calls=calls,
            rss_before_mb=rss_before,
            peak_rss_mb=max(sampler.peak_rss_mb, status_mb("VmHWM")),
            peak_threads=sampler.peak_threads,
            peak_pool=pool_peak.peak,
            pool_waits=list(pool_peak.waits),
            drained_after=drained_after,
            ack_levels=levels,
            submit_seconds=submit_seconds,
            submissions=submissions,
            training_during_acks=(training_before, training_after),
            ack_limited=Counter(call.method for call in ack_slack.calls if call.status == 429),
        )
    raise AssertionError("unreachable: ExitStack does not swallow exceptions")


def _engine(url: str) -> Engine:
    engine = make_engine(url)
    upgrade(engine)
    return engine


class _PoolPeak:
    """The most database connections the fleet's engine had checked out at once, and how
    long getting one took: a probe checks one out and back every 0.1 s, as a request
    handler would."""

    def __init__(self, engine: Engine) -> None:
        self.engine, self.peak = engine, 0
        self.waits: list[float] = []
        self._stop = threading.Event()

    @contextmanager
    def running(self) -> Iterator[None]:
        def sample() -> None:
            while not self._stop.wait(0.05):
                self.peak = max(self.peak, self.engine.pool.checkedout())  # type: ignore[attr-defined]

        def probe() -> None:
            while not self._stop.wait(0.1):
                started = time.monotonic()
                with self.engine.connect():
                    self.waits.append(time.monotonic() - started)

        threads = [
            threading.Thread(target=sample, name="pool-sampler", daemon=True),
            threading.Thread(target=probe, name="pool-probe", daemon=True),
        ]
        for thread in threads:
            thread.start()
        try:
            yield
        finally:
            self._stop.set()
            for thread in threads:
                thread.join(5)


# -- driving the fleet ------------------------------------------------------------------------


def _submit(bot: BotHarness, channels: list[str], jobs: int) -> list[float | None]:
    """Opens the modal once in each channel, then submits it `jobs` times, spread over the
    channels and people, from several threads (as Slack delivers them: at once). Each
    submission's round trip, None where it was not acked (Bolt answers 404 to a listener
    that did not ack within 3 s; the listener still records the job)."""
    views = {channel: _open_modal(bot, channel) for channel in channels}
    senders = threading.local()  # one client a thread: building one costs an SSL context

    def submit(n: int) -> float | None:
        channel = channels[n % len(channels)]
        if not hasattr(senders, "sender"):
            senders.sender = SlackSender(bot.base_url)
        sender = senders.sender
        fields = train_form(name=f"fleet {n}", dataset="iris")
        answer = sender.interaction(
            view_submission(views[channel], fields, user=USERS[n % len(USERS)])
        )
        acked = answer.status_code == 200 and not answer.text
        return sender.ack_seconds[-1] if acked else None

    with ThreadPoolExecutor(SUBMITTERS) as pool:
        return list(pool.map(submit, range(jobs)))


def _open_modal(bot: BotHarness, channel: str) -> dict[str, Any]:
    response = bot.sender.command("", channel=channel, user=USERS[0])
    if response.status_code != 200:
        raise RuntimeError(f"/train was answered {response.status_code}")

    def opened() -> list[dict[str, Any]]:
        return [
            view["view"]
            for view in bot.slack.views
            if view["method"] == "views.open" and f'"{channel}"' in view["view"]["private_metadata"]
        ]

    return bot.slack.wait_for(opened, timeout=10)[-1]


@contextmanager
def _ack_bot(root: Path, engine: Engine, slack: FakeSlack) -> Iterator[tuple[str, Requests]]:
    """The bot as the fleet's, served alone on its own database, with neither worker nor
    notifier: what it records stays queued and unannounced. Its Slack is a fake with `slack`'s
    token in a process of its own (fleet_acks.RemoteSlack), as Slack is remote; the calls it
    answered are added to `slack.calls` when it stops."""
    with RemoteSlack(slack.token) as remote:
        settings = make_settings(root / "acks", TRAINBOT_MAX_JOBS_PER_WORKSPACE=0)
        slack_settings = SlackSettings(
            SLACK_BOT_TOKEN=remote.token,
            SLACK_API_URL=remote.api_url,
            TRAINBOT_API_TOKEN=API_TOKEN,
            SLACK_SIGNING_SECRET=SIGNING_SECRET,
        )
        runtime = build_runtime(
            settings,
            slack_settings,
            engine=engine,
            guard=UrlGuard(resolver=fake_resolver),
            sandboxes=_NoSandboxes(),
        )
        server: Any = make_server(runtime, host="127.0.0.1", port=0)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{server.effective_port}"
        try:
            SlackSender(url).command("", channel="C0ACKS", user=USERS[0])
            view = remote.opened_view(timeout=10)
            yield url, Requests(view, channels=["C0ACKS"], users=USERS, api_url=remote.api_url)
        finally:
            server.close()
            thread.join(5)
    slack.calls.extend(remote.calls)


class _NoSandboxes:
    """The ack bot's provider: the form asks its caps; it never runs a job."""

    name = "standin-e2b"
    max_lifetime: int | None = None
    isolates_network = True
    survives_worker = True
    concurrent_limit: int | None = None
    concurrent_jobs = 1

    def create(self, *, job_id: str, timeout: int) -> Any:
        raise AssertionError("the ack bot runs no jobs")

    def kill(self, sandbox_id: str) -> bool:
        return False

    def extend(self, sandbox_id: str, seconds: int) -> Any:
        raise AssertionError("the ack bot runs no jobs")


def _jobs(engine: Engine, limit: int) -> list[TrainingJob]:
    with session_scope(engine) as session:
        return queries.list_jobs(session, limit=limit + 10)


def _count(engine: Engine, statuses: set[JobStatus]) -> int:
    return sum(1 for job in _jobs(engine, 10_000) if job.job_status in statuses)


def _wait_statuses(engine: Engine, jobs: int, statuses: set[JobStatus], *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _count(engine, statuses) < jobs:
        if time.monotonic() > deadline:
            seen = Counter(job.status for job in _jobs(engine, jobs))
            raise TimeoutError(f"after {timeout:.0f} s the jobs are {dict(seen)}")
        time.sleep(0.25)


def _live_times(engine: Engine, jobs: list[TrainingJob]) -> dict[str, float]:
    """Each live job's live event, as this process's monotonic clock (the fake's `at`)."""
    offset = time.time() - time.monotonic()
    found = {}
    with session_scope(engine) as session:
        for job in jobs:
            events = queries.list_events(session, job_id=job.id, kinds=[EventKind.FINISHED.value])
            for event in events:
                if event.data.get("status") == JobStatus.LIVE.value:
                    at = event.at if event.at.tzinfo else event.at.replace(tzinfo=UTC)
                    found[job.id] = at.timestamp() - offset
    return found


# -- the rows -------------------------------------------------------------------------------------


def rows(seen: Observed, jobs: int) -> list[Row]:
    live = [job for job in seen.jobs if job.job_status == JobStatus.LIVE]
    cards = [
        Card(job.id, job.card_channel_id or "", job.card_ts or "", job.deployment_url or "")
        for job in seen.jobs
        if job.card_ts
    ]
    ledger = attribute(seen.calls, cards)
    latencies = []
    arrived_for = set()
    for job in live:
        arrived = first_button_at(ledger.by_job.get(job.id, []), job.deployment_url or "")
        if arrived is not None and job.id in seen.live_at:
            arrived_for.add(job.id)
            latencies.append(max(0.0, arrived - seen.live_at[job.id]))
    never = len(live) - len(arrived_for)
    # A button that never came counts as later than any that did.
    button = percentile(latencies + [float("inf")] * never, 0.95)
    counts = [len(ledger.by_job.get(job.id, [])) for job in live]
    busiest = max(live or seen.jobs, key=lambda job: len(ledger.by_job.get(job.id, [])))
    # What a whole job costs: the jobs whose button reached Slack had all their messages sent.
    whole = [job for job in live if job.id in arrived_for] or live
    whole_counts = [len(ledger.by_job.get(job.id, [])) for job in whole]
    typical = mean_counts([ledger.kinds(job.id) for job in whole])
    limited = [call for call in seen.calls if call.status == 429]
    unretried = unretried_429s(sorted(seen.calls, key=lambda call: call.at))
    gaps = edit_gaps(seen.calls)
    shared = Counter(call.method for call in ledger.unattributed)
    close = [gap for gap in gaps if gap < MIN_EDIT_GAP]
    at_50 = next(
        level
        for level in seen.ack_levels
        if level.concurrency == max(level.concurrency for level in seen.ack_levels)
    )
    bot_p99, ref_p99 = at_50.p99(at_50.bot), at_50.p99(at_50.reference)
    ack_failures = [failure for level in seen.ack_levels for failure in level.failures]
    drained = (
        f"Slack idle {seen.drained_after:.1f} s after the last job went live"
        if seen.drained_after is not None
        else "Slack not idle within the drain timeout"
    )
    return [
        Row(
            f"fleet: jobs live (of {jobs})",
            float(len(live)),
            float(jobs),
            target=1.0,
            extra_ok=len(live) == jobs,
            unit="",
            note=(
                f"count; {dict(Counter(job.status for job in seen.jobs))}; {jobs} submissions "
                f"in {seen.submit_seconds:.1f} s, {_acks(seen.submissions)}; "
                f"{seen.peak_threads} threads at most; "
                f"{seen.peak_pool} database connections at most, a checkout took p99 "
                f"{percentile(seen.pool_waits, 0.99) * 1000:.0f} ms, max "
                f"{max(seen.pool_waits, default=0) * 1000:.0f} ms"
                + "".join(f"; {n} failed: {why}" for why, n in _failures(seen.jobs).items())
            ),
        ),
        Row(
            "fleet: peak RSS (MB)",
            seen.peak_rss_mb,
            seen.rss_before_mb,
            target=RSS_TARGET_MB / max(1.0, seen.rss_before_mb),
            absolute=RSS_TARGET_MB,
            unit="MB",
            note=(
                f"MB, the whole process (worker, web, notifier, fakes); reference: "
                f"{seen.rss_before_mb:.0f} MB before the bot started; target < {RSS_TARGET_MB:.0f}"
            ),
        ),
        Row(
            "fleet: live -> button p95",
            button,
            statistics.median(latencies) if latencies else float("inf"),
            target=BUTTON_P95_TARGET,
            absolute=BUTTON_P95_TARGET,
            note=(
                f"seconds; reference: the median; {never} live jobs' buttons never reached "
                f"Slack; {drained}"
            ),
        ),
        Row(
            "fleet: Slack calls per job",
            float(max(counts, default=0)),
            statistics.mean(counts) if counts else 0.0,
            target=CALLS_PER_JOB_TARGET,
            absolute=CALLS_PER_JOB_TARGET,
            unit="",
            note=(
                f"count, max (reference: mean) over live jobs; target max <= "
                f"{CALLS_PER_JOB_TARGET}; {len(seen.calls)} calls in all; the {len(whole)} jobs "
                f"whose button reached Slack: max {max(whole_counts, default=0)}, mean "
                f"{statistics.mean(whole_counts) if whole_counts else 0:.1f}, each on average: "
                + ", ".join(
                    f"{k} {v:.2f}" for k, v in sorted(typical.items(), key=lambda kv: -kv[1])
                )
                + f"; the job with the most: {per_kind_table(ledger.kinds(busiest.id))}"
                + f"; not of a job: {per_kind_table(shared)}"
            ),
        ),
        Row(
            "fleet: 429s left unretried",
            float(len(unretried)),
            float(len(limited)),
            target=0.0,
            absolute=0.0,
            unit="",
            note=(
                f"count (reference: all 429s: "
                f"{per_kind_table(Counter(call.method for call in limited)) or 'none'}); "
                f"unretried: {per_kind_table(Counter(call.method for call in unretried)) or 'none'}"
            ),
        ),
        Row(
            "fleet: card edits < 1 s apart",
            float(len(close)),
            float(len(gaps)),
            target=0.0,
            absolute=0.0,
            unit="",
            note=(
                f"count (reference: all pairs of consecutive edits of a card); shortest gap "
                f"{min(gaps, default=float('inf')):.2f} s"
            ),
        ),
        Row(
            f"acks p99 at {at_50.concurrency} at once",
            bot_p99,
            ref_p99,
            target=ACK_P99_TARGET / ref_p99 if ref_p99 else float("inf"),
            absolute=ACK_P99_TARGET,
            note=(
                f"{summary(seen.ack_levels)}; jobs training during it: "
                f"{seen.training_during_acks[0]} -> {seen.training_during_acks[1]}; "
                f"failures: {len(ack_failures)} ({per_kind_table(Counter(ack_failures))})"
                f"; 429s from its Slack: {per_kind_table(seen.ack_limited) or 'none'}"
            ),
            extra_ok=not any(level.failures for level in seen.ack_levels),
        ),
        Row(
            f"acks p99 at {at_50.concurrency} vs minimal",
            bot_p99,
            ref_p99,
            target=ACK_RATIO_TARGET,
            note="reference: a Bolt app whose two listeners only ack, same server, same run",
        ),
    ]


def _acks(times: list[float | None]) -> str:
    acked = [t for t in times if t is not None]
    late = len(times) - len(acked)
    return (
        f"acked p99 {percentile(acked, 0.99) * 1000:.0f} ms, max {max(acked, default=0):.2f} s"
        + (f", {late} NOT acked within Bolt's 3 s" if late else "")
    )


def _failures(jobs: list[TrainingJob]) -> Counter[str]:
    return Counter(
        f"{job.stage}: {(job.error or '')[:120]}"
        for job in jobs
        if job.job_status == JobStatus.FAILED
    )
