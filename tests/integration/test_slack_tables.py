"""Migration 0004 creates exactly the tables the installed slack_sdk's OAuth stores build.

The migration holds a copy of slack_sdk's definitions (a migration must not change when a
library does); these tests fail when an upgraded slack_sdk builds its tables differently,
which is the moment to write a migration that follows it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from slack_sdk.oauth.installation_store.sqlalchemy import SQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.sqlalchemy import SQLAlchemyOAuthStateStore
from sqlalchemy import MetaData, inspect
from sqlalchemy.engine import Engine

from storage.db import downgrade, make_engine, upgrade
from storage.external_tables import SLACK_TABLES
from tests.support.databases import fresh_database


def _slack_sdk_metadata(engine: Engine) -> MetaData:
    """The tables as slack_sdk's stores build them, on one MetaData."""
    metadata = MetaData()
    for store in (
        SQLAlchemyInstallationStore(client_id="x", engine=engine),
        SQLAlchemyOAuthStateStore(expiration_seconds=600, engine=engine),
    ):
        for table in store.metadata.tables.values():
            table.to_metadata(metadata)
    return metadata


def _schema(engine: Engine) -> dict[str, Any]:
    """The slack_ tables as the database reports them: columns, keys and indexes."""
    inspector = inspect(engine)
    return {
        table: {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], c.get("autoincrement"))
                for c in inspector.get_columns(table)
            ],
            "primary key": inspector.get_pk_constraint(table)["constrained_columns"],
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                for i in inspector.get_indexes(table)
            ),
        }
        for table in sorted(SLACK_TABLES & set(inspector.get_table_names()))
    }


def test_the_store_tables_slack_sdk_builds_are_the_ones_we_know() -> None:
    metadata = _slack_sdk_metadata(make_engine("sqlite://"))
    assert set(metadata.tables) == SLACK_TABLES


def test_migration_0004_matches_the_installed_slack_sdk(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    upgrade(engine)
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "include_name": lambda name, type_, parent: (
                    type_ != "table" or name in SLACK_TABLES
                ),
            },
        )
        diff = compare_metadata(context, _slack_sdk_metadata(engine))
    assert diff == [], "slack_sdk's OAuth tables changed: write a migration that follows them"
    engine.dispose()


def test_migrated_tables_equal_the_ones_slack_sdk_creates(
    empty_db_url: str, tmp_path: Path
) -> None:
    """The same, as the database itself reports it: migrated beside created by slack_sdk."""
    migrated = make_engine(empty_db_url)
    upgrade(migrated)
    kind = "sqlite" if empty_db_url.startswith("sqlite") else "postgresql"
    (tmp_path / "created").mkdir()
    with fresh_database(kind, tmp_path / "created") as url:
        created = make_engine(url)
        for store in (
            SQLAlchemyInstallationStore(client_id="x", engine=created),
            SQLAlchemyOAuthStateStore(expiration_seconds=600, engine=created),
        ):
            store.create_tables()
        try:
            assert _schema(migrated) == _schema(created)
            assert set(_schema(migrated)) == SLACK_TABLES
        finally:
            created.dispose()
    migrated.dispose()


def test_downgrade_from_0004_removes_only_the_slack_tables(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    upgrade(engine)
    downgrade(engine, "0003")
    tables = set(inspect(engine).get_table_names())
    assert not tables & SLACK_TABLES
    assert "training_jobs" in tables
    upgrade(engine)
    assert SLACK_TABLES <= set(inspect(engine).get_table_names())
    engine.dispose()
