"""A /metrics scrape only reads: it answers at once while another process holds SQLite's write
lock (a sweep pass, say), and it sends no statement that writes, on either database."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import event

from bot.probes import METRICS_PATH, Probes
from commands.billing import month_key
from commands.lab import Lab
from storage.db import Database
from tests.commands.helpers import file
from tests.conftest import Clock, make_lab

WRITES = ("INSERT", "UPDATE", "DELETE", "BEGIN IMMEDIATE")


def test_a_scrape_answers_while_another_process_holds_the_sqlite_write_lock(
    sqlite_db: Database, clock: Clock
) -> None:
    lab = _running(sqlite_db, clock)
    holder = sqlite3.connect(sqlite_db.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        body = _scrape(lab, clock)
        took = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert took < 1  # a writer would have waited out the 15 s busy timeout
    assert "labbot_database_up 1.0" in body
    assert f'labbot_credit_granted_cents{{month="{month_key(clock.now)}"}}' in body


def test_a_scrape_sends_no_statement_that_writes(db: Database, clock: Clock) -> None:
    lab = _running(db, clock)
    with _statements(db) as sent:
        body = _scrape(lab, clock)
    assert 'labbot_leases{state="pending"} 1.0' in body
    assert sent and not [s for s in sent if s.lstrip().upper().startswith(WRITES)]


def _running(db: Database, clock: Clock) -> Lab:
    """A lab with a request filed this month (so this month's books have their rows)."""
    lab = make_lab(db, clock)
    file(lab, clock)
    return lab


def _scrape(lab: Lab, clock: Clock) -> str:
    probes = Probes(lab, clock, timedelta(minutes=10), clock.now)
    return b"".join(probes.answer(METRICS_PATH, lambda *_: None)).decode()


@contextmanager
def _statements(db: Database) -> Iterator[list[str]]:
    sent: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        sent.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
