"""What every benchmark module shares: a fixed clock, throw-away SQLite files, timing, and a
tidy report (one section per module, aligned rows, PASS/MISS against a target).

A benchmark never fails the run because a target is missed: it prints MISS and goes on. Only an
error (an exception, a broken invariant) makes `python -m benchmarks` exit non-zero.
"""

from __future__ import annotations

import gc
import resource
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing import Queue, get_context
from pathlib import Path
from typing import Any

from commands.lab import Lab
from commands.policy import Policy, RequestInput, Roles
from commands.request import request
from fakes.keys import public_key
from fakes.notifier import RecordingNotifier
from metal.provider import utcnow
from metal.simulated import SimulatedProvider
from storage.db import Database
from storage.models import Lease
from storage.schema import upgrade

WIDTH = 78


# clock -------------------------------------------------------------------------------------
@dataclass
class FixedClock:
    """The simulated provider's clock: benchmarks pass the same `now` to the use cases."""

    now: datetime = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


# databases ---------------------------------------------------------------------------------
@contextmanager
def workdir(prefix: str = "labbot-bench-") -> Iterator[Path]:
    """A temporary directory for SQLite files, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def new_database(path: Path) -> Database:
    """A fresh SQLite file with the current schema, opened the way the bot opens it."""
    path.unlink(missing_ok=True)
    db = Database(f"sqlite:///{path}")
    upgrade(db)
    return db


def open_database(path: Path) -> Database:
    return Database(f"sqlite:///{path}")


def seal(db: Database) -> None:
    """Fold the WAL into the main file and close every connection, so the file alone is a
    complete copy of the database."""
    with db.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    db.dispose()


def copy_database(source: Path, target: Path) -> Path:
    """A byte copy of a sealed database file: far faster than building it again."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(source, target)
    return target


def remove_database(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def make_lab(
    db: Database,
    clock: FixedClock,
    policy: Policy | None = None,
    reviewers: frozenset[str] = frozenset(),
    admins: frozenset[str] = frozenset(),
) -> Lab:
    """A Lab as the tests build it: the simulated provider (devices in the same database, up
    after 120 s of the clock) and a notifier that only records."""
    return Lab(
        db,
        SimulatedProvider(db, clock=clock, provision_seconds=120),
        RecordingNotifier(),
        policy or Policy(),
        Roles(reviewers=reviewers, admins=admins),
    )


# fakes in a process of their own -----------------------------------------------------------
@contextmanager
def served_elsewhere(serve: Callable[[Queue], None]) -> Iterator[Any]:
    """Run a fake service in a forked process, as the real service would be elsewhere: its
    TLS, HTTP and JSON work must not compete with labbot for one interpreter lock. `serve`
    puts what the benchmark needs to reach it on the queue, then serves until killed."""
    context = get_context("fork")
    ready = context.Queue()
    process = context.Process(target=serve, args=(ready,), daemon=True)
    process.start()
    try:
        yield ready.get(timeout=30)
    finally:
        process.kill()
        process.join()


def serve_forever() -> None:
    """What a served-elsewhere fake does once it has said where it is."""
    threading.Event().wait()


# timing ------------------------------------------------------------------------------------
def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """Wall time of one call (garbage collection settled first), and its result."""
    gc.collect()
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def median(values: list[float]) -> float:
    return statistics.median(values)


def seconds(value: float) -> str:
    if value < 1:
        return f"{value * 1000:.1f} ms"
    return f"{value:.2f} s"


# report ------------------------------------------------------------------------------------
def section(title: str) -> None:
    print()
    print("=" * WIDTH)
    print(title)
    print("=" * WIDTH, flush=True)


def heading(title: str) -> None:
    print()
    print(f"-- {title} " + "-" * max(0, WIDTH - len(title) - 4), flush=True)


def note(text: str) -> None:
    print(f"   {text}", flush=True)


def row(label: str, value: str, extra: str = "") -> None:
    print(f"   {label:<44} {value:>14}  {extra}".rstrip(), flush=True)


def verdict(met: bool) -> str:
    return "PASS" if met else "MISS"


def target_row(label: str, value: float, target: float, fmt: str = "{:.2f}") -> bool:
    """A ratio (or any number) against an upper bound: prints PASS or MISS, returns whether
    the target was met."""
    met = value <= target
    row(label, fmt.format(value), f"target <= {fmt.format(target)}  {verdict(met)}")
    return met


# provider scale runs (packet_scale, ec2_scale) ----------------------------------------------
OWNER, REVIEWER = "U0BENCH", "U0REVIEW"


def file_lease(lab: Lab, plan: str, metro: str, count: int, os: str = "") -> int:
    """One large request, as a 5k-node scale test would file it."""
    filed = request(
        lab,
        OWNER,
        RequestInput(
            project="kubernetes",
            repo_url="https://github.com/kubernetes/kubernetes",
            purpose="5k-node scale test",
            plan=plan,
            metro=metro,
            os=os,
            count=count,
            duration=timedelta(hours=12),
            ssh_key=public_key("scale-test"),  # a request needs a key to put on its servers
        ),
        utcnow(),
    )
    assert filed.ok, filed.message
    return filed.lease_id


def measured(fn: Callable[[], object]) -> tuple[tuple[float, int], object]:
    """Wall time of one call, and the process's peak resident memory after it (tracemalloc
    would triple the wall time it is measuring)."""
    wall, result = timed(fn)
    return (wall, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024), result


def report_scale(
    what: str, result: tuple[float, int], ideal: float, done: int, total: int, target: float
) -> float:
    """Prints the rows of one direction of a scale run; returns wall / ideal."""
    wall, peak = result
    row(f"{what} done", f"{done} of {total}")
    row(f"{what}: wall time", seconds(wall), f"ideal {seconds(ideal)}")
    target_row(f"{what}: wall / ideal", wall / ideal, target)
    row(f"{what}: peak RSS of labbot's process", f"{peak / 2**20:.0f} MB")
    return wall / ideal


def lease_state(lab: Lab, lease_id: int) -> str:
    with lab.db.read() as session:
        return session.get(Lease, lease_id).state
