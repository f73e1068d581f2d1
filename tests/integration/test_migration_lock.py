"""Processes that start together against a new database migrate it once, under a lock."""

from __future__ import annotations

import multiprocessing
import os
import re
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel

from storage.db import alembic_config, make_engine, upgrade
from storage.external_tables import not_slack_table
from storage.locks import migration_lock
from tests.support.cli import CliRun
from tests.support.cli import cli_env as cli_env_fixture
from tests.support.concurrent_upgrade import upgrade_when_all_are_ready

# The fixture by name, so pytest finds it in this module.
cli_env = cli_env_fixture

PROCESSES = 4


def test_processes_upgrading_a_fresh_database_together_migrate_it_once(
    empty_db_url: str,
) -> None:
    # spawn, not fork: each child builds its own engine and imports, as a real process does.
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=upgrade_when_all_are_ready, args=(empty_db_url, barrier, results))
        for _ in range(PROCESSES)
    ]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=180) for _ in procs]
    for proc in procs:
        proc.join(30)
    assert [kind for kind, _ in outcomes] == ["ok"] * PROCESSES, outcomes
    writers = [count for _, count in outcomes if count]
    assert len(writers) == 1, f"writes per process: {outcomes}"  # one migrated, the rest saw head

    engine = make_engine(empty_db_url)
    try:
        head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
        with engine.connect() as conn:
            # slack_sdk's OAuth tables are not our models: test_slack_tables.py checks them.
            opts = {"compare_type": True, "include_name": not_slack_table}
            context = MigrationContext.configure(conn, opts=opts)
            assert context.get_current_heads() == (head,)
            assert compare_metadata(context, SQLModel.metadata) == []
    finally:
        engine.dispose()


def test_upgrade_waits_while_another_holds_the_lock(empty_db_url: str) -> None:
    holder, waiter = make_engine(empty_db_url), make_engine(empty_db_url)
    done = threading.Event()

    def migrate() -> None:
        upgrade(waiter)
        done.set()

    thread = threading.Thread(target=migrate)
    try:
        with migration_lock(holder):
            thread.start()
            assert not done.wait(2), "upgrade ran while another process held the lock"
        assert done.wait(60)
        with waiter.connect() as conn:
            assert MigrationContext.configure(conn).get_current_heads() != ()
    finally:
        thread.join(60)
        holder.dispose()
        waiter.dispose()


def test_an_in_memory_database_needs_no_lock_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # where a lock named after an empty path would land
    engine = make_engine("sqlite://")
    upgrade(engine)
    engine.dispose()
    assert list(tmp_path.iterdir()) == []
    file_engine = make_engine("sqlite:///trainbot.db")
    upgrade(file_engine)
    file_engine.dispose()
    # The lock lives beside the file it guards, and stays (removing it would let two
    # processes lock two different files).
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".lock")] == [
        "trainbot.db.migrate.lock"
    ]


QUEUED = re.compile(r"Job ([0-9a-f]{8}) queued")


def _seen(run: CliRun) -> str:
    return "\n".join(run.lines)


def _has_open(proc: subprocess.Popen[str], path: Path) -> bool:
    fds = Path(f"/proc/{proc.pid}/fd")
    try:
        return any(os.readlink(fd) == str(path) for fd in fds.iterdir())
    except OSError:  # the process exited, or closed a descriptor while we looked
        return False


def test_two_runs_started_together_on_a_fresh_sqlite_file_both_start(
    tmp_path: Path,
    cli_env: dict[str, str],  # noqa: F811  - test_cli's fixture, imported above
) -> None:
    db = tmp_path / "trainbot.db"  # the default DATABASE_URL, in the runs' working directory
    # Widen the race as a slow disk would: hold SQLite's write lock until both processes have
    # opened the database, so neither can have migrated before the other starts to.
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("BEGIN IMMEDIATE")
    runs = [
        CliRun(["--name", f"twin-{n}", "--dataset", "iris", "--ttl", "30"], tmp_path, cli_env)
        for n in range(2)
    ]
    try:
        deadline = time.monotonic() + 120
        while not all(_has_open(run.proc, db) for run in runs) and time.monotonic() < deadline:
            assert all(run.proc.poll() is None for run in runs), [_seen(r) for r in runs]
            time.sleep(0.1)
        time.sleep(1)  # let both reach the point where they wait for the database
        holder.execute("ROLLBACK")
        holder.close()
        # Both passed migration and created their jobs; going live is test_cli's concern.
        while time.monotonic() < deadline:
            if all(QUEUED.search(_seen(run)) for run in runs):
                break
            if any(run.proc.poll() is not None for run in runs):
                break
            time.sleep(0.1)
        for run in runs:
            assert QUEUED.search(_seen(run)), _seen(run)
            assert "Traceback" not in _seen(run), _seen(run)
    finally:
        holder.close()
        for run in runs:
            if run.proc.poll() is None:
                run.proc.kill()
            run.proc.wait(30)
