"""The lock that lets processes started together against a new database migrate it once.

PostgreSQL: a session-level advisory lock, held on a connection of its own. It is not the
connection Alembic migrates on, on purpose: Alembic's transaction must commit before the lock
is released, so the next holder reads the new `alembic_version`; a transaction-scoped lock on
Alembic's connection would be let go early by any migration that commits midway (Alembic's
`autocommit_block`, `transaction_per_migration`), and after a failed migration that connection
sits in an aborted transaction that cannot even run the unlock. The lock's own connection is in
autocommit, so it never idles inside a transaction while a long migration runs.

SQLite: `flock` on a file beside the database (`<db>.migrate.lock`), released when the holder
exits however it exits. In-memory databases belong to one process and need no lock.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine

# pg_advisory_lock takes a signed 64-bit key; this is "trainbot" in ASCII. Advisory locks are
# per database, so it need only differ from other keys used on the same database.
MIGRATION_LOCK_KEY = 0x7472_6169_6E62_6F74
CLAIM_LOCK_KEY = MIGRATION_LOCK_KEY + 1  # held while a worker claims jobs (storage.queue)


def migration_lock(engine: Engine) -> AbstractContextManager[None]:
    """Held around every Alembic command; blocks until no other process holds it."""
    if engine.dialect.name == "postgresql":
        return _advisory_lock(engine, MIGRATION_LOCK_KEY)
    if engine.dialect.name == "sqlite":
        path = sqlite_file(engine)
        return _file_lock(path.with_name(path.name + ".migrate.lock")) if path else nullcontext()
    return nullcontext()  # only SQLite and PostgreSQL are supported


def claim_file_lock(engine: Engine) -> AbstractContextManager[None]:
    """SQLite's claim lock, held around the claim's whole transaction, commit included: the
    next claimer then reads what this one claimed. PostgreSQL's is a transaction-scoped
    advisory lock taken inside the claim's own transaction (see storage.queue)."""
    if engine.dialect.name != "sqlite":
        return nullcontext()
    path = sqlite_file(engine)
    return _file_lock(path.with_name(path.name + ".claim.lock")) if path else nullcontext()


def sqlite_file(engine: Engine) -> Path | None:
    """The file behind a SQLite engine, or None for an in-memory database."""
    database = engine.url.database or ""
    if engine.url.query.get("uri") == "true":  # sqlite:///file:path?mode=...&uri=true
        if engine.url.query.get("mode") == "memory":
            return None
        database = database.removeprefix("file:")
    if database in ("", ":memory:"):
        return None
    return Path(database)  # relative paths are relative to the cwd, as for SQLite itself


@contextmanager
def _advisory_lock(engine: Engine, key: int) -> Iterator[None]:
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
        try:
            yield
        finally:
            # A session lock outlives the checkout: the pool would keep it held for good.
            try:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
            except Exception:
                # Closing the session frees the lock just as well, so this is no failure.
                conn.invalidate()


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    # "a" creates the file without truncating it; it is never removed, since removing it
    # while another process waits on it would let a third lock a new file of the same name.
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
