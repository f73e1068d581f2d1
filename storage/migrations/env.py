"""Alembic environment: the engine comes from `storage.db.alembic_config`, never from a file."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import storage.models  # noqa: F401  - registers the tables on SQLModel.metadata
from storage.external_tables import not_slack_table

config = context.config
target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    engine = config.attributes["engine"]
    with engine.begin() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER much
            compare_type=True,
            include_name=not_slack_table,  # slack_sdk owns its tables (see 0004)
        )
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
