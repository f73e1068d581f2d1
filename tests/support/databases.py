"""Empty databases for tests: a SQLite file, or a fresh PostgreSQL database per test."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import StaticPool
from sqlmodel import create_engine

from storage.db import upgrade

POSTGRES_URL_ENV = "TRAINBOT_TEST_POSTGRES_URL"


def postgres_server_url() -> str:
    """The test server's URL. Missing or unreachable is an error, never a skip."""
    url = os.environ.get(POSTGRES_URL_ENV)
    if not url:
        raise RuntimeError(
            f"{POSTGRES_URL_ENV} is not set. Run the tests with `make test`, which points it "
            "at the PostgreSQL server on 127.0.0.1:5432."
        )
    return url


def _admin_conninfo(url: str) -> str:
    parsed = make_url(url)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    server = postgres_server_url()
    name = f"trainbot_test_{secrets.token_hex(6)}"
    admin = _admin_conninfo(server)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def fresh_database(kind: str, tmp_path: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'trainbot-test.db'}"
    elif kind == "postgresql":
        with fresh_postgres_database() as url:
            yield url
    else:
        raise ValueError(kind)


def in_memory_engine() -> Iterator[Engine]:
    """A migrated in-memory SQLite database for a fixture to yield from. One connection is
    shared by every session: each new connection to "sqlite://" would be a new, empty one."""
    engine = create_engine(
        "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
    )
    event.listen(engine, "connect", lambda conn, _: conn.execute("PRAGMA foreign_keys=ON"))
    upgrade(engine)
    yield engine
    engine.dispose()
