"""Schema migrations with Alembic, applied at start-up and by `labbot db upgrade`.

Several replicas start at once on one PostgreSQL database, and each upgrades at start-up. The
upgrade runs in one transaction (PostgreSQL's DDL is transactional) that first takes an advisory
lock: the first replica migrates, the others wait for its commit and then find nothing left to
do. On SQLite the transaction starts with `BEGIN IMMEDIATE`, which does the same.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import func, select

from storage.db import Database

MIGRATIONS = Path(__file__).parent / "migrations"


def _config(connection, grace: timedelta = timedelta(hours=1)) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    config.attributes["grace"] = grace
    return config


MIGRATION_LOCK = "labbot:migrations"


def upgrade(db: Database, grace: timedelta = timedelta(hours=1), to: str = "head") -> None:
    """Migrate under a lock, so that replicas starting together take turns: the first migrates
    and the others find nothing left to do. `grace`: the lab's grace after a lease's end, which
    a data migration that computes commitments (the credit holds) must reserve as the running
    lab does. `to`: a revision, for tests that fill a database as an earlier release left it."""
    engine = db.engine.execution_options(labbot_immediate=True)
    with db.writers(), engine.begin() as connection:
        if not db.is_sqlite:
            connection.execute(select(func.pg_advisory_xact_lock(func.hashtext(MIGRATION_LOCK))))
        command.upgrade(_config(connection, grace), to)


def revision(db: Database, message: str) -> None:
    """For developers: write a new migration from the difference between models and database."""
    with db.engine.begin() as connection:
        command.revision(_config(connection), message=message, autogenerate=True)
