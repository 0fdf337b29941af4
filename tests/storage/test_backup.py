"""`labbot db backup`: a consistent copy of a SQLite database taken while others write to it."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlmodel import select

from bot.cli import main
from storage.backup import BackupError, backup
from storage.db import Database
from storage.models import AuditEvent

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def _write(db: Database, n: int) -> None:
    with db.write() as session:
        session.add(AuditEvent(at=NOW, actor="system", action="bench", details=f"row {n}"))


def _events(db: Database) -> int:
    with db.read() as session:
        return session.exec(select(func.count()).select_from(AuditEvent)).one()


def test_a_backup_taken_while_rows_are_written_opens_as_a_whole_database(
    db: Database, tmp_path: Path
) -> None:
    for n in range(200):
        _write(db, n)
    stop = threading.Event()
    written = []

    def writer() -> None:
        while not stop.is_set():
            _write(db, len(written))
            written.append(1)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while len(written) < 20:  # the writer is under way before the copy starts
            stop.wait(0.01)
        before = 200 + len(written)
        copy = backup(db, tmp_path / "copy.db")
    finally:
        stop.set()
        thread.join()

    with sqlite3.connect(copy) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    restored = Database(f"sqlite:///{copy}")
    try:
        assert before <= _events(restored) <= _events(db)
    finally:
        restored.dispose()


def test_the_cli_copies_and_never_overwrites(
    db: Database, db_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    _write(db, 1)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{db_path}")
    target = tmp_path / "nightly.db"
    assert main(["db", "backup", str(target)]) == 0
    assert "backed up" in capsys.readouterr().out
    assert main(["db", "backup", str(target)]) == 1
    assert "already exists" in capsys.readouterr().err


def test_postgresql_is_pointed_at_pg_dump(tmp_path: Path) -> None:
    pytest.importorskip("psycopg")  # the driver arrives with PostgreSQL support (issue 8)
    with pytest.raises(BackupError, match="pg_dump"):
        backup(Database("postgresql://labbot@localhost/labbot"), tmp_path / "x.db")
