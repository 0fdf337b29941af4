"""A database as the release before a migration left it, for the upgrade tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlmodel import SQLModel

from storage.db import Database
from storage.schema import MIGRATIONS, _config


def as_before(db: Database, revision: str) -> None:
    """Take an upgraded test database back to the release before `revision`, whatever the chain
    says that is, so the test fills it the way that release did."""
    previous = ScriptDirectory(str(MIGRATIONS)).get_revision(revision).down_revision
    with db.engine.begin() as connection:
        command.downgrade(_config(connection), previous)


@contextmanager
def models_fit(db: Database) -> Iterator[None]:
    """The columns today's models have and an older schema's tables lack, added while a test
    fills that schema through the models (the ORM writes and reads every mapped column) and
    dropped again before the upgrade runs, so the migration meets the older schema exactly."""
    added = []
    with db.engine.begin() as connection:
        inspector = inspect(connection)
        tables = set(inspector.get_table_names())
        for table in SQLModel.metadata.sorted_tables:
            if table.name not in tables:
                continue
            have = {column["name"] for column in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name not in have:
                    kind = column.type.compile(connection.dialect)
                    connection.execute(
                        text(f'alter table "{table.name}" add column "{column.name}" {kind}')
                    )
                    added.append((table.name, column.name))
    try:
        yield
    finally:
        with db.engine.begin() as connection:
            for table_name, column_name in added:
                connection.execute(text(f'alter table "{table_name}" drop column "{column_name}"'))


def upgraded_with_one_active_server(db: Database, revision: str) -> int:
    """The release before `revision` with one active lease (#7, coredns) and its one server,
    upgraded to the head; returns the server's id."""
    # Imported here: the holds migration's test fills its rows with models_fit, from this module.
    from tests.conftest import START
    from tests.storage.test_migration_credit_holds import lease_row, server_row

    as_before(db, revision)
    with models_fit(db), db.write() as session:
        session.add(lease_row(7, "active", "coredns"))
        session.flush()
        session.add(server_row(1, 7, active_at=START))
    with db.engine.begin() as connection:
        command.upgrade(_config(connection), "head")
    return 1
