"""What the database plans for the statements a piece of code runs: recorded as they are
sent, then explained (SQLite's EXPLAIN QUERY PLAN, PostgreSQL's EXPLAIN), so a test can say
"this read seeks by an index" without naming the SQL it expects.

Diagnostics only: the statements explained are the ones storage/ built and sent.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Engine

OUR_TABLES = ("training_jobs", "job_events", "ai_models")


@dataclass(frozen=True)
class Sent:
    statement: str
    parameters: Any


@dataclass(frozen=True)
class Plan:
    statement: str
    lines: list[str]  # SQLite: each step's detail; PostgreSQL: "Node Type on relation (index)"

    def full_scans(self, tables: tuple[str, ...] = OUR_TABLES) -> list[str]:
        """The steps that read a whole table (or a whole index) of `tables`: SQLite's
        "SCAN t" (a SEARCH seeks), PostgreSQL's Seq Scan."""
        found = []
        for line in self.lines:
            words = line.split()
            if line.startswith("SCAN ") and len(words) > 1 and words[1] in tables:
                found.append(line)
            elif line.startswith("Seq Scan on ") and words[3] in tables:
                found.append(line)
        return found

    def sorts(self, table: str) -> list[str]:
        """The sorts of every row of `table` that matched (an index in the right order
        would give the first rows at once): SQLite's temp b-tree for the whole ORDER BY,
        PostgreSQL's Sort above a scan of the table."""
        if not any(table in line.split() for line in self.lines):
            return []
        whole = ("USE TEMP B-TREE FOR ORDER BY", f"Sort over {table}")
        return [line for line in self.lines if line in whole]

    def uses(self, index: str) -> bool:
        return any(index in line.split() for line in self.lines)


@contextmanager
def recorded(engine: Engine) -> Iterator[list[Sent]]:
    """Every statement `engine` sends while inside (executemany and EXPLAIN left out)."""
    sent: list[Sent] = []

    def record(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        if not many and statement.lstrip().upper().startswith("SELECT"):
            sent.append(Sent(statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


def plans_of(engine: Engine, read: Callable[[], object]) -> list[Plan]:
    """Runs `read`, then explains each statement it sent, on its own connection. PostgreSQL
    is told not to seq-scan or sort when it has any other way: on a small table either is
    its cheapest plan, so only a statement that has no index to seek by, or none in the
    order it asks for, still shows one (as it would at size)."""
    with recorded(engine) as sent:
        read()
    with engine.connect() as conn:
        postgres = conn.dialect.name == "postgresql"
        if postgres:
            conn.execute(text("SET enable_seqscan = off"))
            conn.execute(text("SET enable_sort = off"))
        plans = []
        for one in sent:
            if postgres:
                found = conn.exec_driver_sql(
                    "EXPLAIN (FORMAT JSON) " + one.statement, one.parameters
                )
                lines = list(_pg_lines(_as_json(found.scalar_one())[0]["Plan"]))
            else:
                found = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + one.statement, one.parameters)
                lines = [str(row[3]) for row in found]
            plans.append(Plan(one.statement, lines))
        conn.rollback()
    return plans


def _as_json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _pg_lines(node: dict[str, Any]) -> Iterator[str]:
    line = str(node["Node Type"])
    if "Relation Name" in node:
        line += f" on {node['Relation Name']}"
    if "Index Name" in node:
        line += f" using {node['Index Name']}"
    if line == "Sort":
        line += " over " + " ".join(sorted(_relations(node)))
    yield line
    for child in node.get("Plans", []):
        yield from _pg_lines(child)


def _relations(node: dict[str, Any]) -> set[str]:
    found = {node["Relation Name"]} if "Relation Name" in node else set()
    for child in node.get("Plans", []):
        found |= _relations(child)
    return found
