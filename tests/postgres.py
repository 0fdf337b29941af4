"""A throwaway PostgreSQL 15 server for the tests and the soak, or the one named by
`LABBOT_TEST_DATABASE_URL`.

The server refuses to run as root, so when we are root `initdb` and `pg_ctl` run as the
`postgres` user, in a temporary directory handed to it; it listens on 127.0.0.1 on a free port
and is stopped (and its directory removed) at the end. Under pytest-xdist every worker starts a
server of its own; on a server given by URL the workers share it, each with a template of its own
(`template_name`).

Each test gets a database of its own that is, to the test, a fresh copy of the migrated template
(`Server.lend`): no rows, every sequence at its start, the template's schema. Copying the
template (`CREATE DATABASE ... TEMPLATE`) costs the server about 0.15 s of CPU each time (a copy
of every catalog file and a checkpoint), so a database a test has finished with is emptied and
lent again (`Server.take_back`): its connections are ended, it is renamed (so nothing still
holding the old URL reaches it), every table is emptied and every sequence restarted, in a few
milliseconds. One whose schema is no longer the template's (an upgrade test took it back to an
older release) is dropped instead, and the next test gets a new copy.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool
from sqlmodel import SQLModel

import storage.models  # noqa: F401 - the tables an emptied database is emptied of
from storage.db import normalise_url

BIN = Path(os.environ.get("LABBOT_PG_BIN", "/usr/lib/postgresql/15/bin"))
TEMPLATE = "labbot_template"
STARTS = 3  # a free port another process took before our server bound it: try another
# What makes a database's schema the template's: every column (with its position, type, default
# and whether a dropped one left a hole), index, constraint and sequence, and the migration it is
# at. A database lent again must match its template on all of it.
SCHEMA = """
SELECT md5(string_agg(part, E'\\n' ORDER BY part)) FROM (
    SELECT c.relname || '.' || a.attnum || '.' || a.attname || ':' || a.atttypid::regtype
           || ':' || a.attnotnull || ':' || a.attisdropped || ':'
           || coalesce(pg_get_expr(d.adbin, d.adrelid), '') AS part
      FROM pg_attribute a
      JOIN pg_class c ON c.oid = a.attrelid
      LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE c.relnamespace = 'public'::regnamespace AND a.attnum > 0
    UNION ALL SELECT indexdef FROM pg_indexes WHERE schemaname = 'public'
    UNION ALL SELECT conrelid::regclass || ' ' || pg_get_constraintdef(oid)
      FROM pg_constraint WHERE connamespace = 'public'::regnamespace
    UNION ALL SELECT 'type ' || typname FROM pg_type WHERE typnamespace = 'public'::regnamespace
    UNION ALL SELECT 'at ' || version_num FROM alembic_version
) AS schema
"""
TABLES = "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
SEQUENCES = "SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'"


def template_name() -> str:
    """This process's template: one per xdist worker (`gw0`, `gw1`, ...), so that workers
    sharing a server given by URL never drop or copy each other's."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    return f"{TEMPLATE}_{worker}" if worker else TEMPLATE


class Unavailable(RuntimeError):
    """No PostgreSQL here: the sentence says what is missing."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """The server: started by us (`start`) or given by URL (`given`)."""

    def __init__(self, admin_url: str, stop: Callable[[], None] | None = None) -> None:
        self.admin_url = admin_url
        self._stop = stop
        self._names = itertools.count(1)
        self._engine: Engine | None = None  # one admin connection pool for the session
        self._lent: dict[str, str] = {}  # database lent -> its template
        self._emptied: dict[str, list[str]] = {}  # template -> databases ready to lend again
        self._emptying: dict[str, Emptying | None] = {}  # template -> how (None: drop instead)

    @classmethod
    def given(cls, url: str) -> Server:
        return cls(normalise_url(url))

    @classmethod
    def start(cls) -> Server:
        if not (BIN / "pg_ctl").exists():
            raise Unavailable(f"PostgreSQL 15 is not installed ({BIN}/pg_ctl is missing)")
        root = Path(tempfile.mkdtemp(prefix="labbot-pg-"))
        data = root / "data"
        as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if as_postgres:
            root.chmod(0o755)
            shutil.chown(root, "postgres", "postgres")
        run = lambda *argv: subprocess.run(  # noqa: E731 - one line per server command
            [*as_postgres, *argv], check=True, capture_output=True, timeout=120
        )
        run(str(BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync")
        for attempt in range(1, STARTS + 1):
            port = free_port()
            options = (
                f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off -c synchronous_commit=off "
                "-c full_page_writes=off -c max_connections=300"
            )
            try:
                run(str(BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l",
                    str(root / "log"), "-w", "start")  # fmt: skip
                break
            except subprocess.CalledProcessError:
                if attempt == STARTS:
                    raise

        def stop() -> None:
            run(str(BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
            shutil.rmtree(root, ignore_errors=True)

        return cls(f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", stop)

    def url(self, database: str) -> str:
        return make_url(self.admin_url).set(database=database).render_as_string(False)

    def _admin(self, *statements: str) -> None:
        if self._engine is None:
            self._engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with self._engine.connect() as connection:
            for statement in statements:
                connection.execute(text(statement))

    def create(self, template: str | None = None, name: str | None = None) -> str:
        """A new empty database (or a copy of `template`); returns its URL. A copy is made
        file by file (FILE_COPY): with fsync off that costs less than PostgreSQL 15's default,
        which writes every page of the template to the WAL."""
        name = name or f"labbot_{os.getpid()}_{next(self._names)}"
        copy = f" TEMPLATE {template} STRATEGY FILE_COPY" if template else ""
        self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"CREATE DATABASE {name}{copy}")
        return self.url(name)

    def drop(self, url: str) -> None:
        self._admin(f"DROP DATABASE IF EXISTS {make_url(url).database} WITH (FORCE)")

    def lend(self, template: str) -> str:
        """A database as a fresh copy of `template` would be: one emptied after an earlier
        test, or a new copy. Give it back with `take_back` (or `drop` it)."""
        ready = self._emptied.setdefault(template, [])
        url = self.url(ready.pop()) if ready else self.create(template=template)
        self._lent[make_url(url).database] = template
        return url

    def take_back(self, url: str) -> None:
        """Empty a lent database to lend it again; drop it if it can no longer pass for a
        fresh copy of its template."""
        template = self._lent.pop(make_url(url).database)
        if template not in self._emptying:
            self._emptying[template] = Emptying.of(self.url(template))
        emptying = self._emptying[template]
        name = f"labbot_{os.getpid()}_{next(self._names)}"
        try:
            if emptying is None:
                raise LookupError("the template's tables are not the models' tables")
            self._admin(*_ended_and_renamed(make_url(url).database, name))
            emptying.empty(self.url(name))
        except Exception:  # anything at all: a new copy is what the next test gets
            self.drop(url)
            self.drop(self.url(name))
            return
        self._emptied[template].append(name)

    def stop(self) -> None:
        for names in self._emptied.values():
            for name in names:
                self.drop(self.url(name))
        self._emptied.clear()
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        if self._stop is not None:
            self._stop()


def _ended_and_renamed(database: str, name: str) -> list[str]:
    """Its connections ended (a process a test left behind included), then its new name, so
    that nothing holding the old URL can reach it again."""
    return [
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        f" WHERE datname = '{database}' AND pid <> pg_backend_pid()",
        f"""DO $$ BEGIN
            FOR attempt IN 1..200 LOOP
                EXIT WHEN NOT EXISTS (SELECT FROM pg_stat_activity WHERE datname = '{database}');
                PERFORM pg_sleep(0.01);
            END LOOP;
        END $$""",
        f"ALTER DATABASE {database} RENAME TO {name}",
    ]


class Emptying:
    """How to take a database copied from one template back to the template's state: its
    schema's fingerprint, and the statements that empty every table and restart every sequence.
    TRUNCATE rather than DELETE: each table gets a new empty file, so rows come back from a scan
    in the order they were written, as in a new copy (a DELETE leaves free space that later rows
    fill, and a test reading rows without ORDER BY would see another order)."""

    def __init__(self, schema: str, statements: list[str]) -> None:
        self.schema = schema
        self.statements = statements

    @classmethod
    def of(cls, template_url: str) -> Emptying | None:
        """None when the template holds tables the models do not know (which emptying would
        leave as they are) or rows (which emptying would lose)."""
        engine = create_engine(template_url, poolclass=NullPool)  # no connection stays open
        try:
            with engine.connect() as connection:
                schema = connection.execute(text(SCHEMA)).scalar_one()
                tables = set(connection.execute(text(TABLES)).scalars())
                sequences = list(connection.execute(text(SEQUENCES)).scalars())
                models = [t.name for t in reversed(SQLModel.metadata.sorted_tables)]
                if tables != {*models, "alembic_version"} or any(
                    connection.execute(text(f'SELECT EXISTS (SELECT FROM "{t}")')).scalar_one()
                    for t in models
                ):
                    return None
        finally:
            engine.dispose()
        truncate = "TRUNCATE " + ", ".join(f'"{table}"' for table in models)
        restarts = [f'ALTER SEQUENCE "{sequence}" RESTART' for sequence in sequences]
        return cls(schema, [truncate, *restarts])

    def empty(self, url: str) -> None:
        engine = create_engine(url, poolclass=NullPool)
        try:
            with engine.begin() as connection:
                schema = connection.execute(text(SCHEMA)).scalar_one()
                if schema != self.schema:
                    raise LookupError("its schema is no longer the template's")
                connection.execute(text(";".join(self.statements)))
        finally:
            engine.dispose()


def server_from_environment() -> Server:
    """The server the tests use: `LABBOT_TEST_DATABASE_URL` when set, else one we start."""
    given = os.environ.get("LABBOT_TEST_DATABASE_URL")
    return Server.given(given) if given else Server.start()
