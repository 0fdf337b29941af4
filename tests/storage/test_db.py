"""The database layer: migrations, pragmas, immediate write transactions, URL normalising."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from datetime import datetime

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlmodel import select

from storage.db import BUSY_TIMEOUT_MS, Busy, Database, ReadOnly, normalise_url
from storage.locks import insert_new, locked
from storage.models import Lease, Marker
from storage.schema import MIGRATIONS, upgrade
from tests.conftest import START


def test_upgrade_creates_every_table_and_is_idempotent(db):
    upgrade(db)
    names = set(inspect(db.engine).get_table_names())
    assert {
        "lease",
        "server",
        "ledgerentry",
        "auditevent",
        "notice",
        "sentreminder",
        "pendingextension",
        "orphan",
        "marker",
        "simdevice",
        "creditmonth",
        "credithold",
        "meter",
        "inboxitem",
        "alembic_version",
    } <= names
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    with db.engine.connect() as connection:
        assert connection.execute(text("select version_num from alembic_version")).scalar() == head


def test_every_sqlite_connection_gets_wal_foreign_keys_and_a_busy_timeout(db_path):
    db = Database(f"sqlite:///{db_path}")
    with db.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 15000


class _ReleaseOnWait(logging.Handler):
    """Ends the other connection's write lock once labbot says it is waiting for it."""

    def __init__(self, holder: sqlite3.Connection) -> None:
        super().__init__()
        self.holder = holder
        self.waits = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.waits += 1
        if self.holder.in_transaction:
            self.holder.execute("ROLLBACK")


def test_a_connection_waits_for_another_switching_a_new_file_to_wal(db_path, caplog):
    """Another process switching the same new file to WAL holds its write lock, and SQLite
    answers this connection's switch SQLITE_BUSY at once rather than waiting: replicas
    starting together on a new file died of "database is locked". Now it waits its turn."""
    other = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # the write lock, as the other switch holds it
    release = _ReleaseOnWait(other)
    caplog.set_level(logging.DEBUG, logger="storage.db")
    logging.getLogger("storage.db").addHandler(release)
    try:
        db = Database(f"sqlite:///{db_path}")
        with db.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        logging.getLogger("storage.db").removeHandler(release)
        other.close()
    assert release.waits >= 1
    db.dispose()


def test_a_write_rolls_back_on_any_raise(db):
    with pytest.raises(RuntimeError), db.write() as session:
        session.add(Marker(key="x", at=START))
        session.flush()
        raise RuntimeError("boom")
    with db.read() as session:
        assert session.get(Marker, "x") is None


def test_a_bounded_write_gives_up_while_another_process_holds_the_sqlite_write_lock(sqlite_db):
    holder = sqlite3.connect(sqlite_db.path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        with pytest.raises(Busy), sqlite_db.write(wait=0.3) as session:
            session.add(Marker(key="x", at=START))
            session.flush()
        assert time.monotonic() - started < 2  # not the 15 s busy timeout
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with sqlite_db.write(wait=0.3) as session:
        session.add(Marker(key="x", at=START))
    with sqlite_db.read() as session:  # the pooled connection waits as long as before
        assert session.exec(text("PRAGMA busy_timeout")).one()[0] == BUSY_TIMEOUT_MS
        assert session.get(Marker, "x") is not None


def test_a_bounded_write_goes_before_this_process_s_queued_writers(sqlite_db):
    """An ack keeping its request (a bounded write) waits for the transaction under way, not
    for the writers queued behind it: the markers are written holder, ack, then the queue."""
    order: list[str] = []
    holding, release = threading.Event(), threading.Event()

    def write(key: str, wait: float | None = None) -> None:
        with sqlite_db.write(wait=wait) as session:
            order.append(key)
            session.add(Marker(key=key, at=START))
            if key == "holder":
                holding.set()
                release.wait(5)

    def queued(n: int) -> bool:
        with sqlite_db._writers._turn:  # how many writers wait for this process's turn
            return len(sqlite_db._writers._turn._waiters) >= n

    holder = threading.Thread(target=write, args=("holder",))
    holder.start()
    holding.wait(5)
    threads = [threading.Thread(target=write, args=(f"work{n}",)) for n in range(3)]
    for thread in threads:
        thread.start()
    while not queued(3):
        time.sleep(0.001)
    threads.append(threading.Thread(target=write, args=("ack", 5.0)))
    threads[-1].start()
    while not queued(4):
        time.sleep(0.001)
    release.set()
    for thread in [holder, *threads]:
        thread.join(5)
    assert order[:2] == ["holder", "ack"] and sorted(order[2:]) == ["work0", "work1", "work2"]


def test_a_read_only_transaction_refuses_a_write_at_once_and_leaves_writes_possible(db):
    with pytest.raises(ReadOnly), db.read_only() as session:
        session.add(Marker(key="x", at=START))
        session.flush()
    with db.write() as session:
        session.add(Marker(key="y", at=START))
    with db.read() as session:
        assert session.get(Marker, "x") is None and session.get(Marker, "y") is not None


def test_aware_datetimes_round_trip_and_naive_ones_are_refused(db):
    with db.write() as session:
        session.add(Marker(key="t", at=START))
    with db.read() as session:
        assert session.get(Marker, "t").at == START
    with pytest.raises(Exception, match="must have timezone information"), db.write() as session:
        session.add(Marker(key="n", at=datetime(2026, 1, 1)))


def test_a_read_that_decides_a_write_holds_the_row(db):
    """Sixteen threads each read a counter (FOR UPDATE) and write it back plus one: none is
    lost, on SQLite's single writer and on PostgreSQL's READ COMMITTED alike."""
    with db.write() as session:
        session.add(Marker(key="counter", at=START))

    def bump():
        with db.write() as session:
            row = locked(session, Marker, "counter")
            row.at = row.at.replace(second=row.at.second + 1)
            session.add(row)

    threads = [threading.Thread(target=bump) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with db.read() as session:
        assert session.get(Marker, "counter").at.second == 16


def test_foreign_keys_are_enforced(db):
    from storage.models import Server

    with pytest.raises(Exception, match=r"(?i)foreign key"), db.write() as session:
        session.add(Server(lease_id=12345, hostname="h", plan="p", metro="m", hourly_cents=1))
        session.flush()


def test_reopening_keeps_the_rows(db_path):
    first = Database(f"sqlite:///{db_path}")
    upgrade(first)
    with first.write() as session:
        session.add(Marker(key="kept", at=START))
    first.dispose()
    second = Database(f"sqlite:///{db_path}")
    upgrade(second)
    with second.read() as session:
        assert session.get(Marker, "kept").at == START
        assert session.exec(select(Lease)).all() == []
    assert second.path == db_path
    second.dispose()


def test_in_memory_databases_share_one_connection():
    db = Database("sqlite://")
    upgrade(db)
    with db.write() as session:
        session.add(Marker(key="m", at=START))
    seen = []
    thread = threading.Thread(target=lambda: seen.append(_get(db)))
    thread.start()
    thread.join()
    assert seen == [START] and db.path is None


def _get(db):
    with db.read() as session:
        return session.get(Marker, "m").at


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        ("postgresql://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_urls_are_normalised(url, expected):
    assert normalise_url(url) == expected


def _insert_marker(key: str):
    return lambda connection: [
        row.key for row in insert_new(connection, Marker, [{"key": key, "at": START}], Marker.key)
    ]


def test_one_statement_commits_by_itself_and_gives_up_on_a_lock_held_past_its_wait(db):
    assert db.one_statement(0.3, _insert_marker("x")) == ["x"]
    assert db.one_statement(0.3, _insert_marker("x")) == []  # present: skipped
    taken, release = threading.Event(), threading.Event()

    def holder() -> None:  # inserts "y" and holds its transaction open
        with db.write() as session:
            session.add(Marker(key="y", at=START))
            session.flush()
            taken.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert taken.wait(10)
        started = time.monotonic()
        with pytest.raises(Busy):
            db.one_statement(0.3, _insert_marker("y"))
        assert time.monotonic() - started < 2
    finally:
        release.set()
        thread.join()
    with db.read() as session:
        assert {m.key for m in session.exec(select(Marker))} == {"x", "y"}


def test_one_statement_on_sqlite_waits_out_another_process_write(sqlite_db):
    """Another process holds SQLite's write lock for a moment (SQLite answers the statement
    "busy" at once: its busy timeout is 0): the statement is tried again until the lock is free,
    within its wait, and kept."""
    other = sqlite3.connect(sqlite_db.path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    releasing = threading.Timer(0.2, lambda: other.execute("COMMIT"))
    releasing.start()
    try:
        assert sqlite_db.one_statement(2.0, _insert_marker("z")) == ["z"]
    finally:
        releasing.join()
        other.close()
    with sqlite_db.read() as session:
        assert [m.key for m in session.exec(select(Marker))] == ["z"]


def test_one_statement_replaces_a_connection_the_database_closed(db):
    if db.is_sqlite:
        pytest.skip("a SQLite file has no server to close a connection")
    assert db.one_statement(1.0, _insert_marker("before")) == ["before"]
    with db.write() as session:  # the database restarting would close them so
        closed = session.exec(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).one()[0]
    assert closed >= 1
    assert db.one_statement(1.0, _insert_marker("after")) == ["after"]
