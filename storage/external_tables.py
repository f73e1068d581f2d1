"""Tables that live in TrainBot's database but belong to another library.

slack_sdk's SQLAlchemy OAuth stores (installation store, state store) read and write their
own tables, built by their own `build_*_table` class methods on their own MetaData. Migration
0004 creates them, with the definitions copied in, so the schema is under Alembic like every
other table. They are deliberately not on SQLModel.metadata: storage.models would then
import slack_sdk, and our models' schema test would check slack_sdk's definitions rather than
ours. tests/integration/test_slack_tables.py checks instead that the migrated tables are the
ones the installed slack_sdk builds, so an upgrade that changes them fails there.
"""

from __future__ import annotations

from typing import Any

# slack_sdk.oauth.installation_store.sqlalchemy.SQLAlchemyInstallationStore
# (default_bots_table_name, default_installations_table_name) and
# slack_sdk.oauth.state_store.sqlalchemy.SQLAlchemyOAuthStateStore.default_table_name.
SLACK_TABLES = frozenset({"slack_bots", "slack_installations", "slack_oauth_states"})


def not_slack_table(name: str | None, type_: str, parent_names: Any) -> bool:
    """Alembic's `include_name` hook: compare (and autogenerate) our tables only."""
    return not (type_ == "table" and name in SLACK_TABLES)
