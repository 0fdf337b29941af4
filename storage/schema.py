"""Schema migrations with Alembic, applied at start-up and by `labbot db upgrade`."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from alembic import command
from alembic.config import Config

from storage.db import Database

MIGRATIONS = Path(__file__).parent / "migrations"


def _config(connection, grace: timedelta = timedelta(hours=1)) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    config.attributes["grace"] = grace
    return config


def upgrade(db: Database, grace: timedelta = timedelta(hours=1), to: str = "head") -> None:
    """`grace`: the lab's grace after a lease's end, which a data migration that computes
    commitments (0003's holds) must reserve as the running lab does. `to`: a revision, for
    tests that fill a database as an earlier release left it."""
    with db.engine.begin() as connection:
        command.upgrade(_config(connection, grace), to)


def revision(db: Database, message: str) -> None:
    """For developers: write a new migration from the difference between models and database."""
    with db.engine.begin() as connection:
        command.revision(_config(connection), message=message, autogenerate=True)
