"""A child process for the migration-lock tests. Its own module, so that a spawned child
imports only this and storage, not the test module's heavier imports."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

from storage.db import make_engine, upgrade

WRITES = {"CREATE", "ALTER", "DROP", "INSERT", "UPDATE", "DELETE", "REPLACE"}


def upgrade_when_all_are_ready(url: str, barrier: Any, results: Any) -> None:
    """Import and connect first, then upgrade at the same moment as the other children,
    reporting how many writing statements this process ran (or the error it met)."""
    engine = make_engine(url)
    writes: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().split(None, 1)[0].upper() in WRITES:
            writes.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    barrier.wait(timeout=120)
    try:
        upgrade(engine)
    except Exception as error:  # reported to the test, which shows it
        results.put(("error", repr(error)))
    else:
        results.put(("ok", len(writes)))
    finally:
        engine.dispose()
