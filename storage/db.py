"""Engines, sessions and migrations. Nothing here runs at import time."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, create_engine

from storage import queries
from storage.locks import migration_lock
from storage.models import TrainingJob

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def make_engine(url: str, *, pool_size: int = 10, max_overflow: int = 25) -> Engine:
    """An engine for SQLite (the default, a file) or PostgreSQL (postgresql+psycopg://...);
    the pool's sizes are PostgreSQL's."""
    if url.startswith("postgres://"):  # Heroku-style URLs
        url = "postgresql+psycopg://" + url.removeprefix("postgres://")
    elif url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        # Worker threads share the engine; SQLite needs this to allow it. Its writers take
        # turns on the file whatever the pool (busy_timeout below).
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    else:
        # A worker's job threads (hundreds for remote sandboxes) write in short bursts; at
        # 200 jobs in one process SQLAlchemy's 5 + 10 ran out and a job's write waited past
        # the pool's 30 s (bench/fleet.py). Ten kept, 25 more for bursts, and the Slack
        # notifier's own 2 + 8 (bot.runtime): two processes at their busiest stay within
        # PostgreSQL's default max_connections of 100.
        kwargs |= {"pool_size": pool_size, "max_overflow": max_overflow}
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")  # readers (CLI) do not block the worker
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate under `migration_lock`, so processes started together migrate once; a process
    that finds the database already at head (before or after waiting) changes nothing."""
    config = alembic_config(engine)
    if revision == "head" and _seen_at_head(engine, config):
        return  # the usual start: no lock to wait for, no lock file to create
    with migration_lock(engine):
        if revision == "head" and _at_head(engine, config):
            return  # another process migrated while this one waited
        command.upgrade(config, revision)


def downgrade(engine: Engine, revision: str) -> None:
    with migration_lock(engine):
        command.downgrade(alembic_config(engine), revision)


def _seen_at_head(engine: Engine, config: Config) -> bool:
    """The look before the lock, which only spares it: where SQLite answers "database is
    locked" (processes started together on a new file all switch it to WAL as they connect,
    and one migrates), this process takes the lock and looks again there."""
    try:
        return _at_head(engine, config)
    except OperationalError:
        if engine.dialect.name != "sqlite":
            raise
        return False


def _at_head(engine: Engine, config: Config) -> bool:
    heads = set(ScriptDirectory.from_config(config).get_heads())
    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads()) == heads


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One unit of work: commits on success, rolls back on error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def ping(engine: Engine) -> None:
    """Raises when the database cannot be reached."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def create_job_once(engine: Engine, **fields: Any) -> tuple[TrainingJob, bool]:
    """`queries.create_job` in a transaction of its own, safe against the same request arriving
    twice, even at once and in two processes: (job, created). A second delivery gets the job the
    first one created.

    The rows are written without looking for the `request_key` first: a key seen before is
    rare (Slack redelivers a submission only when the ack was late), and its unique index
    refuses the second job, which then reads the first. On PostgreSQL it is one statement on
    its own (autocommit), so a Slack submission waits for one round trip before its ack."""
    new = queries.new_job(**fields)
    try:
        if engine.dialect.name == "postgresql":
            with engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT")
                queries.insert_new_job(conn, new)
        else:
            with session_scope(engine) as session:
                queries.add_new_job(session, new)
        return new.job, True
    except IntegrityError:
        key = fields.get("request_key")
        if key is None:
            raise
        with session_scope(engine) as session:
            seen = queries.get_job_by_request_key(session, request_key=key)
        if seen is None:
            raise
        return seen, False
