"""Shared fixtures: a real database (every test that takes `db` runs twice, on a SQLite file and
on PostgreSQL 15), the simulated provider on a clock the test steps, and a notifier that records
what people would have been told.

Each database starts as a copy of one migrated once per session (per xdist worker): a SQLite
file copied, a PostgreSQL template database cloned (or a clone emptied after an earlier test).
Without PostgreSQL on the machine the PostgreSQL half is skipped with the reason;
`LABBOT_REQUIRE_POSTGRES=1` (set by .ci/run) turns that skip into a failure."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from commands.lab import Lab
from commands.policy import Policy, RequestInput, Roles
from fakes.keys import public_key
from fakes.notifier import RecordingNotifier
from metal.simulated import SimulatedProvider
from storage.db import Database
from storage.schema import upgrade
from tests.postgres import Server, Unavailable, server_from_environment, template_name
from tests.schedule import reorder

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
OWNER, OTHER, REVIEWER, ADMIN = "U0OWNER", "U0OTHER", "U0REVIEW", "U0ADMIN"
ROLES = Roles(reviewers=frozenset({REVIEWER}), admins=frozenset({ADMIN}))


@dataclass
class Clock:
    now: datetime = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


NOWHERE = "http://127.0.0.1:9"  # the discard port: a forge that refuses at once


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    reorder(items)  # long tests first in each xdist worker's share (tests/schedule.py)


@pytest.fixture(autouse=True)
def no_real_forge(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing outside 127.0.0.1 is contacted: settings read from the environment point the
    forge client at a closed local port unless a test starts the fake Forge API."""
    monkeypatch.setenv("GITHUB_API_URL", NOWHERE)
    monkeypatch.setenv("GITLAB_API_URL", NOWHERE + "/api/v4")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "labbot.db"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once for the session, which each test's database is a copy of."""
    path = tmp_path_factory.mktemp("template") / "labbot.db"
    database = Database(f"sqlite:///{path}")
    upgrade(database)
    database.dispose()
    # The last connection closed checkpointed the WAL into the file: the file is all of it.
    assert not path.with_name(path.name + "-wal").exists(), "template's WAL not checkpointed"
    return path


def copy_of(template: Path, path: Path) -> str:
    """The URL of a migrated, empty SQLite database at `path`: a copy of the template."""
    shutil.copyfile(template, path)
    return f"sqlite:///{path}"


@pytest.fixture(scope="session")
def postgres() -> Iterator[Server | Exception]:
    """The session's PostgreSQL server with a migrated template database, or why there is none."""
    try:
        server = server_from_environment()
    except (Unavailable, OSError, subprocess.SubprocessError) as error:
        yield error
        return
    try:
        template = Database(server.create(name=template_name()))
        upgrade(template)
        template.dispose()
        yield server
    finally:
        server.stop()


def _postgres(request: pytest.FixtureRequest) -> Server:
    server = request.getfixturevalue("postgres")
    if not isinstance(server, Server):
        reason = f"PostgreSQL half skipped: {server}"
        if os.environ.get("LABBOT_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{reason} (LABBOT_REQUIRE_POSTGRES=1)")
        pytest.skip(reason)
    return server


@pytest.fixture(params=["sqlite", "postgresql"])
def blank_database_url(request: pytest.FixtureRequest, db_path: Path) -> Iterator[str]:
    """An empty database of each kind, with no tables at all."""
    if request.param == "sqlite":
        yield f"sqlite:///{db_path}"
        return
    server = _postgres(request)
    url = server.create()
    yield url
    server.drop(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, db_path: Path, sqlite_template: Path
) -> Iterator[str]:
    """A migrated, empty database of each kind: a copy of the session's template (on
    PostgreSQL one emptied after an earlier test, as good as a copy: tests/postgres.py)."""
    if request.param == "sqlite":
        yield copy_of(sqlite_template, db_path)
        return
    server = _postgres(request)
    url = server.lend(template_name())
    yield url
    server.take_back(url)


@pytest.fixture(scope="session")
def first_engines() -> dict[tuple[str, str], Engine]:
    """The session's first test engine of each kind (dialect and driver): see `compiling_once`."""
    return {}


def compiling_once(database: Database, first_engines: dict[tuple[str, str], Engine]) -> Database:
    """`database`, compiling its SQL with the dialect and compiled-statement cache of the first
    test database of its kind in this session.

    SQLAlchemy keeps each statement's compiled SQL in a cache per engine, keyed by the engine's
    dialect object, so each test's new engine compiled again every statement the product runs:
    about 40% of the CPU of a test that works the database. The test databases of one kind are
    opened alike (`Database`, the same driver and server) and compiled SQL depends only on the
    statement and the dialect, so the first one's serves them all. Each test still has its own
    engine, pool, connections and database."""
    engine = database.engine
    first = first_engines.setdefault((engine.dialect.name, engine.dialect.driver), engine)
    engine.dialect, engine._compiled_cache = first.dialect, first._compiled_cache
    return database


@pytest.fixture
def db(database_url: str, first_engines: dict[tuple[str, str], Engine]) -> Iterator[Database]:
    database = compiling_once(Database(database_url), first_engines)
    yield database
    database.dispose()


@pytest.fixture
def sqlite_db(
    db_path: Path, sqlite_template: Path, first_engines: dict[tuple[str, str], Engine]
) -> Iterator[Database]:
    """A migrated SQLite file, for what only SQLite has (its online backup API, its pragmas)."""
    database = compiling_once(Database(copy_of(sqlite_template, db_path)), first_engines)
    yield database
    database.dispose()


def make_lab(db: Database, clock: Clock, policy: Policy | None = None) -> Lab:
    provider = SimulatedProvider(db, clock=clock, provision_seconds=120)
    return Lab(db, provider, RecordingNotifier(), policy or Policy(), ROLES)


@pytest.fixture
def lab(db: Database, clock: Clock) -> Lab:
    return make_lab(db, clock)


OWNER_KEY = public_key("owner", "owner@laptop")


def request_input(**changes) -> RequestInput:
    base = RequestInput(
        project="coredns",
        repo_url="https://github.com/coredns/coredns",
        purpose="scale tests of the kubernetes plugin",
        plan="c1.small.x86",
        metro="ams1",
        count=3,
        duration=timedelta(hours=48),
        ssh_key=OWNER_KEY,
    )
    return base.model_copy(update=changes)


def with_policy(lab: Lab, **changes) -> Lab:
    return replace(lab, policy=replace(lab.policy, **changes))
