"""Schema migrations with Alembic, applied at start-up and by `labbot db upgrade`."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from storage.db import Database

MIGRATIONS = Path(__file__).parent / "migrations"


def _config(connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def upgrade(db: Database) -> None:
    with db.engine.begin() as connection:
        command.upgrade(_config(connection), "head")


def revision(db: Database, message: str) -> None:
    """For developers: write a new migration from the difference between models and database."""
    with db.engine.begin() as connection:
        command.revision(_config(connection), message=message, autogenerate=True)
