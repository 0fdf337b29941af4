"""Schema migrations with Alembic, applied at start-up and by `labbot db upgrade`.

Several replicas start at once on one PostgreSQL database, and each upgrades at start-up. The
upgrade runs in one transaction (PostgreSQL's DDL is transactional) that first takes an advisory
lock: the first replica migrates, the others wait for its commit and then find nothing left to
do. On SQLite the transaction starts with `BEGIN IMMEDIATE`, which does the same.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import func, select

from storage.db import Database

MIGRATIONS = Path(__file__).parent / "migrations"


def _config(connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


MIGRATION_LOCK = "labbot:migrations"


def upgrade(db: Database, target: str = "head") -> None:
    engine = db.engine.execution_options(labbot_immediate=True)
    with db.writers(), engine.begin() as connection:
        if not db.is_sqlite:
            connection.execute(select(func.pg_advisory_xact_lock(func.hashtext(MIGRATION_LOCK))))
        command.upgrade(_config(connection), target)


def revision(db: Database, message: str) -> None:
    """For developers: write a new migration from the difference between models and database."""
    with db.engine.begin() as connection:
        command.revision(_config(connection), message=message, autogenerate=True)
