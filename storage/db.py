"""Opening the database (SQLite or PostgreSQL) and running transactions.

SQLite's driver sends no BEGIN before a SELECT, and a deferred transaction that later writes can
fail with "database is locked" under contention. So every transaction that writes starts with
`BEGIN IMMEDIATE` (`Database.write()`), reads use `Database.read()`, and each connection gets WAL,
foreign keys and a busy timeout. On PostgreSQL none of that applies and nothing in the code may
rest on it: see storage.locks and storage.claims.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import StaticPool
from sqlmodel import Session, create_engine

DEFAULT_URL = "sqlite:///labbot.db"
BUSY_TIMEOUT_MS = 15_000
WAL_RETRY_S = 0.005
BOUNDED_RETRY_S = 0.001

log = logging.getLogger(__name__)

T = TypeVar("T")


def normalise_url(url: str) -> str:
    """SQLAlchemy 2.1 refuses `postgres://`, which many platforms still hand out."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class Database:
    def __init__(self, url: str = DEFAULT_URL) -> None:
        self.url = normalise_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        self.engine = self._create_engine()
        # SQLite has one writer at a time, and a writer that finds the lock taken sleeps in
        # growing steps (up to 100 ms) before trying again. Queueing this process's writers on
        # a lock of our own hands the database over at once; other processes still meet the
        # busy timeout.
        self._writers = Writers() if self.is_sqlite else contextlib.nullcontext()
        self._autocommit: dict[int, Engine] = {}  # by lock timeout, ms (`one_statement`)
        self._autocommit_lock = threading.Lock()

    def _create_engine(self) -> Engine:
        if not self.is_sqlite:
            return create_engine(self.url, pool_pre_ping=True, pool_size=10, max_overflow=20)
        memory = self.url in ("sqlite://", "sqlite:///:memory:")
        engine = create_engine(
            self.url,
            connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000},
            poolclass=StaticPool if memory else None,
        )
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine

    @contextmanager
    def write(self, wait: float | None = None) -> Iterator[Session]:
        """A transaction that writes. Commits on success, rolls back on any raise.

        On SQLite it holds the write lock from its first statement, so the read-then-write
        inside it is isolated. On PostgreSQL it is READ COMMITTED, like any other: a read that
        decides a write must hold what it read (storage.locks), and a state change is a
        conditional UPDATE whose row count says who won.

        `wait` bounds, in seconds, how long it waits in all for SQLite's write lock (this
        process's writers first, then other processes' through the busy timeout) and, on
        PostgreSQL, for each row lock: past it, `Busy` is raised and nothing was written."""
        if wait is None:
            engine = self.engine.execution_options(labbot_immediate=True)
            with self._writers, Session(engine, expire_on_commit=False) as session, session.begin():
                yield session
            return
        deadline = time.monotonic() + wait
        with self._writers_within(wait), _busy_as(wait):
            ms = max(1, int((deadline - time.monotonic()) * 1000))
            engine = self.engine.execution_options(labbot_immediate=True, labbot_busy_ms=ms)
            with Session(engine, expire_on_commit=False) as session, session.begin():
                if not self.is_sqlite:
                    session.execute(text(f"SET LOCAL lock_timeout = {ms}"))
                yield session

    @contextmanager
    def _writers_within(self, wait: float) -> Iterator[None]:
        if not self.is_sqlite:
            yield
            return
        if not self._writers.acquire(timeout=wait, first=True):
            raise Busy(f"this process's writers held the database for {wait} s")
        try:
            yield
        finally:
            self._writers.release()

    def one_statement(self, wait: float, statement: Callable[[Connection], T]) -> T:
        """`statement(connection)`: one statement that writes and commits by itself, waiting
        at most `wait` seconds for a lock (past it, `Busy`, and nothing was written). It must
        be safe to repeat (an insert of keyed rows that skips those present): a connection
        found dead, as after a restart of the database, is replaced and it runs again.

        The connection is of a pool of its own, in autocommit. On PostgreSQL its lock timeout
        is set once: one round trip, where a `write()` transaction takes six (the pool's ping,
        BEGIN, the lock timeout, the statement, COMMIT and the pool's reset). On SQLite the
        statement is its own transaction, one call into the driver where a `write(wait)`
        transaction makes six (two busy timeouts, BEGIN IMMEDIATE, the statement, COMMIT and
        the pool's reset), each giving up the interpreter lock to the request threads; a
        busy database is tried again every millisecond until `wait` has passed, as
        `_begin_within` does. Among this process's writers it goes first, as a `write(wait)`
        does (`Writers`). A database in memory has one connection, so there it is a
        `write(wait)` transaction."""
        if self.is_sqlite and self.path is None:
            with self.write(wait) as session:
                return statement(session.connection())
        if self.is_sqlite:
            deadline = time.monotonic() + wait
            with self._writers_within(wait):
                left = max(0.0, deadline - time.monotonic())
                engine = self._autocommit_engine(0)
                return _until_free(left, lambda: _autocommitted(engine, left, statement))
        engine = self._autocommit_engine(max(1, int(wait * 1000)))
        try:
            return _autocommitted(engine, wait, statement)
        except DBAPIError as error:
            if not error.connection_invalidated:
                raise
        return _autocommitted(engine, wait, statement)  # on a new connection

    def _autocommit_engine(self, lock_timeout_ms: int) -> Engine:
        with self._autocommit_lock:
            engine = self._autocommit.get(lock_timeout_ms)
            if engine is None:
                engine = self._autocommit[lock_timeout_ms] = create_engine(
                    self.url,
                    isolation_level="AUTOCOMMIT",
                    pool_reset_on_return=None,  # nothing to roll back in autocommit
                    pool_size=2,
                    connect_args=(
                        {"check_same_thread": False}
                        if self.is_sqlite
                        else {"options": f"-c lock_timeout={lock_timeout_ms}"}
                    ),
                )
                if self.is_sqlite:
                    event.listen(engine, "connect", _sqlite_on_connect_unwaiting)
            return engine

    def writers(self) -> contextlib.AbstractContextManager:
        """This process's queue of writers (SQLite only; a no-op elsewhere)."""
        return self._writers

    @contextmanager
    def read(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def read_only(self) -> Iterator[Session]:
        """A transaction the database itself keeps from writing (SQLite's `query_only`,
        PostgreSQL's READ ONLY): a statement that would write raises `ReadOnly` at once, and
        nothing waits for or takes the write lock. For readers that must never queue behind
        writers, as a metrics scrape."""
        with Session(self.engine, expire_on_commit=False) as session:
            connection = session.connection()
            connection.exec_driver_sql(
                "PRAGMA query_only = ON" if self.is_sqlite else "SET TRANSACTION READ ONLY"
            )
            try:
                yield session
            except DBAPIError as error:
                if "readonly database" in str(error) or "read-only transaction" in str(error):
                    raise ReadOnly(str(error.orig)) from error
                raise
            finally:
                if self.is_sqlite:  # the connection goes back to the pool able to write
                    connection.exec_driver_sql("PRAGMA query_only = OFF")

    def dispose(self) -> None:
        self.engine.dispose()
        for engine in self._autocommit.values():
            engine.dispose()

    @property
    def path(self) -> Path | None:
        if not self.is_sqlite or self.url in ("sqlite://", "sqlite:///:memory:"):
            return None
        return Path(self.url.removeprefix("sqlite:///"))


class Writers:
    """This process's writers on SQLite, one at a time (reentrant, as an RLock). A bounded
    writer (`Database.write(wait=...)`: an ack keeping its request) goes before every unbounded
    one waiting, so it waits only for the transaction under way, not for a queue of work's."""

    def __init__(self) -> None:
        self._turn = threading.Condition()
        self._owner: int | None = None
        self._depth = 0
        self._first = 0  # bounded writers waiting

    def acquire(self, timeout: float | None = None, *, first: bool = False) -> bool:
        me = threading.get_ident()
        with self._turn:
            if self._owner == me:
                self._depth += 1
                return True
            self._first += int(first)
            try:
                free = self._turn.wait_for(
                    lambda: self._owner is None and (first or not self._first), timeout
                )
            finally:
                self._first -= int(first)
                if first:
                    self._turn.notify_all()  # a bounded writer gone: the others may go
            if free:
                self._owner, self._depth = me, 1
            return free

    def release(self) -> None:
        with self._turn:
            self._depth -= 1
            if not self._depth:
                self._owner = None
                self._turn.notify_all()

    def __enter__(self) -> Writers:
        self.acquire()
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


def _sqlite_on_connect(dbapi_connection, _record) -> None:
    # Take BEGIN out of the driver's hands so `_sqlite_on_begin` decides its kind.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    _switch_to_wal(cursor)
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _switch_to_wal(cursor) -> None:
    """Switch the file to WAL (a no-op once it is), waiting out another connection's switch.

    The first switch writes WAL into a new file's header. The pragma takes a read lock, then
    asks for the write lock; SQLite never runs the busy handler for that upgrade (waiting while
    holding a read lock could deadlock), so a connection that meets another process's switch
    of the same new file gets SQLITE_BUSY at once, busy timeout or not: replicas starting
    together on a new file died of "database is locked". It holds no lock between tries, so
    retrying until the busy timeout is the wait SQLite would have done."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if error.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            log.debug("another connection is switching the database to WAL; waiting")
        time.sleep(WAL_RETRY_S)


def _sqlite_on_connect_unwaiting(dbapi_connection, record) -> None:
    """As `_sqlite_on_connect`, with no busy timeout: the caller tries again itself."""
    _sqlite_on_connect(dbapi_connection, record)
    dbapi_connection.execute("PRAGMA busy_timeout=0")


def _sqlite_on_begin(conn) -> None:
    # Straight to the driver: these statements are ours, and SQLAlchemy's execution machinery
    # around each would cost more than SQLite's work.
    driver = conn.connection.driver_connection
    options = conn.get_execution_options()
    begin = "BEGIN IMMEDIATE" if options.get("labbot_immediate", False) else "BEGIN"
    busy_ms = options.get("labbot_busy_ms")
    if busy_ms is None:
        driver.execute(begin)
        return
    driver.execute("PRAGMA busy_timeout=0")
    try:
        _begin_within(driver, begin, busy_ms / 1000)
    finally:
        driver.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")


def _begin_within(driver: sqlite3.Connection, begin: str, wait: float) -> None:
    """Begin, trying again every millisecond until `wait` has passed (`_until_free`). SQLite's
    own busy handler sleeps in growing steps (up to 100 ms) between tries, so a bounded writer
    that meets another process's short write would lose tens of milliseconds it need not."""

    def attempt() -> None:
        try:
            driver.execute(begin)
        except sqlite3.OperationalError as error:
            if error.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                raise
            raise Busy(f"the database's write lock stayed taken for {wait:.2f} s") from error

    _until_free(wait, attempt)


class ReadOnly(Exception):
    """A statement tried to write inside `Database.read_only()`; nothing was written."""


class Busy(Exception):
    """A bounded write (`Database.write(wait=...)`) did not get the lock in time."""


def _until_free(wait: float, attempt: Callable[[], T]) -> T:
    """`attempt()` until it is not `Busy`, every millisecond, for at most `wait` seconds."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return attempt()
        except Busy:
            if time.monotonic() > deadline:
                raise
        time.sleep(BOUNDED_RETRY_S)


def _autocommitted(engine: Engine, wait: float, statement: Callable[[Connection], T]) -> T:
    with _busy_as(wait), engine.connect() as connection:
        return statement(connection)


@contextmanager
def _busy_as(wait: float) -> Iterator[None]:
    """The driver's "database is locked" (SQLite) or lock timeout (PostgreSQL) as `Busy`."""
    try:
        yield
    except OperationalError as error:
        locked = "database is locked" in str(error) or "lock timeout" in str(error)
        if not locked:
            raise
        raise Busy(f"the database's write lock stayed taken for {wait} s") from error
