"""The engine benchmarks' labs: databases built from rows as an upgraded lab holds them, a fresh
byte copy for each run (a sweep or an approval changes what it touches), the Lab on it, and the
reviewers' approvals that drive it.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from queue import Empty, Queue

from sqlalchemy import func, select

from benchmarks.common import FixedClock, copy_database, make_lab, open_database, remove_database
from benchmarks.engine.leases import ADMINS, NOW, REVIEWERS, RICH
from benchmarks.engine.probes import StatementLog
from benchmarks.engine.rows import Rows, stored
from commands.holds import refresh_exactness
from commands.lab import Lab
from commands.review import approve
from storage.db import Database
from storage.models import AuditEvent, CreditHold, Lease, Notice, Server, SimDevice
from storage.schema import upgrade


def built(path: Path, *rowsets: Rows) -> Database:
    """A database filled in bulk as the previous release (schema 0001) wrote it, then upgraded
    by the migrations (holds computed once) and the holds' exactness noted as the engine does
    when it writes them: what a lab upgraded to this release looks like."""
    path.unlink(missing_ok=True)
    db = Database(f"sqlite:///{path}")
    upgrade(db, to="0001")
    for rows in rowsets:
        rows.insert_into(db)
    upgrade(db, grace=RICH.grace)
    with db.write() as session:
        held = session.scalars(select(CreditHold.lease_id).distinct()).all()
        for lease_id in held:
            refresh_exactness(session, lease_id)
    return db


def table_sizes(db: Database) -> dict[str, int]:
    with db.engine.connect() as conn:
        return {
            model.__tablename__: conn.execute(select(func.count()).select_from(model)).scalar()
            for model in (Lease, Server, AuditEvent, Notice, SimDevice)
        }


def engine_lab(db: Database) -> Lab:
    return make_lab(db, FixedClock(NOW), RICH, frozenset(REVIEWERS), frozenset(ADMINS))


@contextmanager
def fresh_lab(source: Path, scratch: Path, log: StatementLog | None = None) -> Iterator[Lab]:
    """A Lab on a byte copy of `source`, removed afterwards."""
    copy_database(source, scratch)
    db = open_database(scratch)
    try:
        if log is not None:
            log.attach(db)
        yield engine_lab(db)
    finally:
        db.dispose()
        remove_database(scratch)


def read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def month_load(path: Path) -> tuple[int, int]:
    """Live leases, and leases whose servers bill in NOW's month: what the books read."""
    start = stored(NOW.replace(day=1, hour=0, minute=0, second=0, microsecond=0))
    with closing(read_only(path)) as conn:
        live = conn.execute(
            "SELECT count(*) FROM lease WHERE state IN ('approved', 'provisioning', 'active')"
        ).fetchone()[0]
        billed = conn.execute(
            "SELECT count(DISTINCT lease_id) FROM server WHERE active_at IS NOT NULL "
            "AND (deleted_at IS NULL OR deleted_at >= ?)",
            (start,),
        ).fetchone()[0]
    return live, billed


def approve_all(lab: Lab, ids: list[int], threads: int) -> list[str]:
    """Approve every lease in `ids` from `threads` threads; returns the failures."""
    queue: Queue[tuple[int, str]] = Queue()
    for n, lease_id in enumerate(ids):
        queue.put((lease_id, REVIEWERS[n % len(REVIEWERS)]))
    failures: list[str] = []

    def worker() -> None:
        while True:
            try:
                lease_id, reviewer = queue.get_nowait()
            except Empty:
                return
            try:
                outcome = approve(lab, reviewer, lease_id, NOW)
            except Exception as error:  # recorded and reported as an error below
                failures.append(f"#{lease_id}: {type(error).__name__}: {error}")
                continue
            if not outcome.ok:
                failures.append(f"#{lease_id}: {outcome.message}")

    if threads == 1:
        worker()
    else:
        pool = [threading.Thread(target=worker, name=f"approver-{n}") for n in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
    return failures
