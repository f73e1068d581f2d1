"""Reads at size (issue 11): `/train list`, `/train status`, App Home and the status API with
10,000 finished jobs (and their ~200,000 events) in SQLite and in PostgreSQL.

Each read is the work the bot does to answer: the queries, the snapshots and the Block Kit
(the slash command's own subcommand function; the App Home listener's two steps), and for
the status API a real HTTP request to the bot's WSGI server. Target: p99 under 100 ms,
absolute. Reference: the p99 of a bare `SELECT 1` round trip on the same engine, so the
ratio says how many round trips a read costs.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.engine import Engine

from bench.cases import Row
from bench.reads_seed import Seeded, seed_jobs
from bench.workers import require_postgres
from bot.ids import TRAIN_COMMAND
from bot.listeners.commands import SUBCOMMANDS, Asked
from bot.listeners.events import home_tab
from bot.payloads import SlashCommand
from pipeline.service import JobService
from storage.db import make_engine, session_scope, upgrade
from storage.models import SHORT_ID_LENGTH
from tests.support.databases import fresh_postgres_database

TARGET = 0.100  # seconds: the p99
SAMPLES = 200
WARM_UP = 5
API_TOKEN = "bench-reads-token"
Read = Callable[[], object]


def reads_at_size(root: Path, jobs: int = 10_000, samples: int = SAMPLES) -> list[Row]:
    """Eight Rows: each read on SQLite, then on a fresh PostgreSQL database (dropped after)."""
    root.mkdir(parents=True, exist_ok=True)
    rows = _reads_on("sqlite", f"sqlite:///{root / 'reads.db'}", root, jobs, samples)
    require_postgres()
    with fresh_postgres_database() as url:
        rows += _reads_on("pg", url, root, jobs, samples)
    return rows


def _reads_on(kind: str, url: str, root: Path, jobs: int, samples: int) -> list[Row]:
    engine = make_engine(url)
    try:
        upgrade(engine)
        started = time.monotonic()
        seeded = seed_jobs(engine, jobs=jobs)
        if kind == "pg":
            with engine.begin() as conn:  # what autovacuum's analyze would have done by now
                conn.execute(text("ANALYZE"))
        seeding = time.monotonic() - started
        reference = p99(_timed(lambda: _select_one(engine), samples))
        with status_api(engine, root / f"api-{kind}") as base_url, httpx.Client() as client:
            timed = {
                name: p99(_timed(read, samples))
                for name, read in bot_reads(engine, seeded, client, base_url).items()
            }
    finally:
        engine.dispose()
    size = f"{seeded.jobs:,} jobs, {seeded.events:,} events (seeded in {seeding:.1f} s)"
    return [
        Row(
            f"{name} ({kind})",
            measured,
            reference,
            target=TARGET / reference,
            absolute=TARGET,
            note=f"p99 of {samples}; {size}; reference: p99 of SELECT 1",
        )
        for name, measured in timed.items()
    ]


def bot_reads(
    engine: Engine, seeded: Seeded, client: httpx.Client, base_url: str
) -> dict[str, Read]:
    """The four reads, as the bot answers them for the seeded person in their workspace (an
    OAuth install: `BotContext.jobs_for` scopes the service to the request's team)."""
    jobs = JobService.reader(engine, min_prefix=SHORT_ID_LENGTH)
    scoped = jobs.for_workspace(seeded.team_id, None)
    command = SlashCommand(
        command=TRAIN_COMMAND,
        text="",
        user_id=seeded.user_id,
        channel_id=seeded.channel_id,
        trigger_id="",
    )
    asked = Asked(scoped, command)
    status_url = f"{base_url}/api/training-jobs/{seeded.job_ref}/status"

    def api() -> object:
        answer = client.get(
            status_url,
            params={"team_id": seeded.team_id},
            headers={"Authorization": f"Bearer {API_TOKEN}"},
        )
        answer.raise_for_status()
        return answer

    return {
        "/train list": lambda: SUBCOMMANDS["list"](asked, []),
        "/train status": lambda: SUBCOMMANDS["status"](asked, []),
        "App Home": lambda: home_tab(scoped, seeded.user_id),
        "status API": api,
    }


@contextmanager
def status_api(engine: Engine, root: Path) -> Iterator[str]:
    """The bot's WSGI server (`trainbot serve`'s) on loopback, neither worker nor notifier
    started: only the reads run. Yields its base URL."""
    from bot.runtime import build_runtime
    from bot.settings import SlackSettings
    from bot.web import make_server
    from tests.fakes.slack_api import FakeSlack
    from tests.support.pipeline import make_settings

    with FakeSlack() as fake:
        slack = SlackSettings(
            SLACK_BOT_TOKEN=fake.token,
            SLACK_API_URL=fake.api_url,
            SLACK_SIGNING_SECRET="bench-signing-secret",
            TRAINBOT_API_TOKEN=API_TOKEN,
        )
        runtime = build_runtime(make_settings(root), slack, engine=engine)
        server = make_server(runtime, host="127.0.0.1", port=0)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.effective_port}"  # type: ignore[union-attr]
        finally:
            # Its request threads first: one still busy with the last keep-alive connection
            # would write to the server's trigger after close() shut it (EBADF, logged).
            server.task_dispatcher.shutdown()
            server.close()
            thread.join(5)


def _select_one(engine: Engine) -> None:
    with session_scope(engine) as session:
        session.execute(text("SELECT 1")).one()


def _timed(read: Read, samples: int) -> list[float]:
    for _ in range(WARM_UP):
        read()
    timings = []
    for _ in range(samples):
        started = time.perf_counter()
        read()
        timings.append(time.perf_counter() - started)
    return timings


def p99(timings: list[float]) -> float:
    """The nearest-rank 99th percentile: no more than 1% of the timings are slower."""
    ordered = sorted(timings)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def _print(rows: list[Row]) -> None:
    for row in rows:
        verdict = "ok" if row.passed else "MISSED"
        print(
            f"{row.name:28} {row.measured * 1000:8.1f} ms  ref {row.reference * 1000:6.2f} ms  "
            f"x{row.ratio:6.1f}  {verdict}  {row.note}"
        )


if __name__ == "__main__":  # python -m bench.reads [jobs]: until the lead wires it into bench
    import sys
    import tempfile

    size = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    with tempfile.TemporaryDirectory() as tmp:
        _print(reads_at_size(Path(tmp) / "reads", jobs=size))
