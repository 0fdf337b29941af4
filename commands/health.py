"""Lease life: whether this lab is being looked after: the database answers and the sweep keeps
running.

The last completed sweep is a row in the database, not a variable in a process, so every web
worker and every replica answers the health check the same way, whichever process swept.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from commands.markers import last, stamp
from storage.db import Database

SWEPT = "sweep:completed"


def record_sweep(db: Database, now: datetime) -> None:
    """Called after a sweep pass returns (a pass whose leases failed one by one still
    completed; one that raised did not)."""
    with db.write() as session:
        stamp(session, SWEPT, now)


def last_sweep(db: Database) -> datetime | None:
    with db.read() as session:
        return last(session, SWEPT)


class Verdict(StrEnum):
    OK = "ok"
    STARTING = "starting"  # no sweep recorded yet, and this process is younger than the limit
    DATABASE_DOWN = "database_down"
    SWEEP_STALE = "sweep_stale"
    NEVER_SWEPT = "never_swept"


@dataclass(frozen=True)
class Health:
    verdict: Verdict
    sweep_age: timedelta | None

    @property
    def healthy(self) -> bool:
        return self.verdict in (Verdict.OK, Verdict.STARTING)


def judge(
    now: datetime,
    swept: datetime | None,
    started: datetime,
    max_age: timedelta,
    database_answers: bool = True,
) -> Health:
    """The health decision, from facts the caller gathered. A sweep older than `max_age` means
    nobody is reclaiming servers or sending reminders: the operator must hear of it."""
    if not database_answers:
        return Health(Verdict.DATABASE_DOWN, None)
    if swept is None:
        verdict = Verdict.STARTING if now - started <= max_age else Verdict.NEVER_SWEPT
        return Health(verdict, None)
    age = now - swept
    return Health(Verdict.OK if age <= max_age else Verdict.SWEEP_STALE, age)
