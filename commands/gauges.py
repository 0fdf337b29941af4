"""Reads: what the lab looks like right now, in numbers an operator graphs and alerts on.

Read from the database at the moment of asking, so every process and every replica gives the
same answer. Each figure is a count or a minimum over an indexed column (or the books, which
sum a few rows per month): asking costs the same in a small lab and a large one. Asking never
writes: the books are read in a read-only transaction, and a month whose books have no rows yet
(nothing granted, held or spent in it so far) is left out rather than opened, so a scrape never
waits for, or takes, the write lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func
from sqlmodel import col, select

from commands.billing import month_bounds, month_key, months_between
from commands.credit_report import CreditLine, books_as_they_stand
from commands.health import last_sweep
from commands.idle import idle_hours
from commands.lab import Lab
from commands.states import ServerState, State
from storage.models import Lease, LedgerEntry, Notice, Server


@dataclass(frozen=True)
class Gauges:
    leases: dict[str, int]
    servers: dict[str, int]
    credit: dict[str, CreditLine]  # month -> the lab's line of the books, for months with a grant
    donor_credit: dict[tuple[str, str], CreditLine]  # (month, donor) -> the donor's, if several
    sweep_lag_s: float  # how long the oldest due lease has waited for the sweep; 0 if none
    last_sweep_age_s: float | None
    outbox_depth: int
    outbox_age_s: float  # age of the oldest undelivered notice; 0 if none
    idle_server_hours: dict[str, float]  # project -> server-hours idle this month so far

    @property
    def quarantined(self) -> int:
        return self.leases.get(State.QUARANTINED, 0)


def gauges(lab: Lab, now: datetime) -> Gauges:
    with lab.db.read() as session:
        leases = dict(session.exec(select(Lease.state, func.count()).group_by(Lease.state)).all())
        servers = dict(
            session.exec(select(Server.state, func.count()).group_by(Server.state)).all()
        )
        oldest_due = session.exec(
            select(func.min(Lease.due_at)).where(col(Lease.due_at) <= now)
        ).one()
        months = _months(lab, now)
        opened = set(  # months whose books have rows; the others hold and have spent nothing
            session.exec(
                select(LedgerEntry.month).where(col(LedgerEntry.month).in_(months)).distinct()
            ).all()
        )
        idle = idle_hours(session, month_bounds(month_key(now))[0], now)
        depth, oldest_notice = session.exec(
            select(func.count(), func.min(Notice.created_at)).where(
                col(Notice.retry_at).is_not(None)
            )
        ).one()
    swept = last_sweep(lab.db)
    reports = {
        month: report
        for month in months
        if month in opened and (report := books_as_they_stand(lab, now, month)) is not None
    }
    return Gauges(
        leases={state.value: leases.get(state.value, 0) for state in State},
        servers={state.value: servers.get(state.value, 0) for state in ServerState},
        credit={month: report.lab for month, report in reports.items()},
        donor_credit={
            (month, line.name): line for month, report in reports.items() for line in report.donors
        },
        sweep_lag_s=_age(now, oldest_due),
        last_sweep_age_s=None if swept is None else _age(now, swept),
        outbox_depth=depth,
        outbox_age_s=_age(now, oldest_notice),
        idle_server_hours=idle,
    )


def _months(lab: Lab, now: datetime) -> list[str]:
    """This month and every later month a lease approved now could still bill."""
    return list(months_between(now, now + lab.policy.max_total + lab.policy.grace))


def _age(now: datetime, then: datetime | None) -> float:
    if then is None:
        return 0.0
    if then.tzinfo is None:  # SQLite hands back naive values from aggregate functions
        then = then.replace(tzinfo=now.tzinfo)
    return max(0.0, (now - then).total_seconds())
