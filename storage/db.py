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
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, create_engine

from storage import queries
from storage.locks import migration_lock
from storage.models import TrainingJob

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def make_engine(url: str) -> Engine:
    """An engine for SQLite (the default, a file) or PostgreSQL (postgresql+psycopg://...)."""
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
        # the pool's 30 s (bench/fleet.py). Ten kept, thirty more for bursts: two processes
        # at their busiest stay within PostgreSQL's default max_connections of 100.
        kwargs |= {"pool_size": 10, "max_overflow": 30}
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
    if revision == "head" and _at_head(engine, config):
        return  # the usual start: no lock to wait for, no lock file to create
    with migration_lock(engine):
        if revision == "head" and _at_head(engine, config):
            return  # another process migrated while this one waited
        command.upgrade(config, revision)


def downgrade(engine: Engine, revision: str) -> None:
    with migration_lock(engine):
        command.downgrade(alembic_config(engine), revision)


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
    """`queries.create_job` in its own transaction, safe against the same request arriving
    twice at once: (job, created). The loser of a race gets the winner's job."""
    try:
        with session_scope(engine) as session:
            key = fields.get("request_key")
            seen = queries.get_job_by_request_key(session, request_key=key) if key else None
            return (seen, False) if seen else (queries.create_job(session, **fields), True)
    except IntegrityError:
        with session_scope(engine) as session:
            seen = queries.get_job_by_request_key(session, request_key=fields["request_key"])
        if seen is None:
            raise
        return seen, False
