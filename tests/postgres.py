"""A throwaway PostgreSQL 15 server for the tests and the soak, or the one named by
`LABBOT_TEST_DATABASE_URL`.

The server refuses to run as root, so when we are root `initdb` and `pg_ctl` run as the
`postgres` user, in a temporary directory handed to it; it listens on 127.0.0.1 on a free port
and is stopped (and its directory removed) at the end. Each test gets its own database copied
from a migrated template (`CREATE DATABASE ... TEMPLATE`), which takes milliseconds, so no test
sees another's rows. Under pytest-xdist every worker starts a server of its own; on a server
given by URL the workers share it, each with a template of its own (`template_name`).
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

from storage.db import normalise_url

BIN = Path(os.environ.get("LABBOT_PG_BIN", "/usr/lib/postgresql/15/bin"))
TEMPLATE = "labbot_template"
STARTS = 3  # a free port another process took before our server bound it: try another


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

    def stop(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        if self._stop is not None:
            self._stop()


def server_from_environment() -> Server:
    """The server the tests use: `LABBOT_TEST_DATABASE_URL` when set, else one we start."""
    given = os.environ.get("LABBOT_TEST_DATABASE_URL")
    return Server.given(given) if given else Server.start()
