"""A database as the release before a migration left it, for the upgrade tests."""

from __future__ import annotations

from alembic import command
from alembic.script import ScriptDirectory

from storage.db import Database
from storage.schema import MIGRATIONS, _config


def as_before(db: Database, revision: str) -> None:
    """Take an upgraded test database back to the release before `revision`, whatever the chain
    says that is, so the test fills it the way that release did."""
    previous = ScriptDirectory(str(MIGRATIONS)).get_revision(revision).down_revision
    with db.engine.begin() as connection:
        command.downgrade(_config(connection), previous)
