"""`labbot db backup PATH`: a consistent copy of a SQLite database while labbot serves.

SQLite's online backup API copies the database page by page and starts over if another
connection writes in between, so the copy is always one committed state, never a torn file
(copying the file while WAL is on can miss the last commits or mix two states). PostgreSQL has
its own tool for this, pg_dump; docs/production.md shows it.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from storage.db import BUSY_TIMEOUT_MS, Database

PAGES_PER_STEP = 1024  # copy in steps, letting writers in between them


class BackupError(Exception):
    pass


def backup(db: Database, target: Path) -> Path:
    source = db.path
    if source is None:
        raise BackupError(
            "labbot db backup copies SQLite files; for PostgreSQL use pg_dump "
            '(pg_dump --format=custom --file=labbot.dump "$DATABASE_URL").'
        )
    if target.exists():
        raise BackupError(f"{target} already exists; name a new file so no backup is overwritten.")
    if not target.parent.is_dir():
        raise BackupError(f"{target.parent} is not a directory.")
    timeout = BUSY_TIMEOUT_MS / 1000
    try:
        with (
            closing(sqlite3.connect(source, timeout=timeout)) as src,
            closing(sqlite3.connect(target, timeout=timeout)) as dst,
        ):
            src.backup(dst, pages=PAGES_PER_STEP)
    except sqlite3.Error as error:
        target.unlink(missing_ok=True)
        raise BackupError(f"the backup of {source} failed: {error}") from error
    return target
