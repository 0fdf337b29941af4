"""Books: the month's money: granted, spent, committed, available, per donor, month and project.

Spent is what servers have billed (per started hour, from `active_at` until deleted or now);
committed is what live leases will still bill until their planned end plus grace; available is
what is left. `granted = spent + committed + available` holds to the cent by construction, and
approval and extension refuse anything that would make available negative for any month unless
an admin records an override in the ledger.

Every donor has its own books (its grant, from `Donor.grant_cents`, written in the ledger once
a month; what the leases billed to it spent and committed); the lab's are their sum. A
project's monthly cap spans the donors. The books are read from the holds and totals that
`commands.holds` writes: a donor's month's spent plus committed is its row of totals plus the
few leases reckoned one by one, whatever the number of live leases, and the lab's the sum of
its donors' rows. Only the split into spent and committed sums the running servers (one SQL
sum).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import case, func
from sqlmodel import Session, col, select

from commands.billing import HOUR, MICROSECOND, format_cents, month_bounds, started_hours, to_us
from commands.donors import FIRST_DONOR
from commands.holds import (
    LAB,
    lease_settled,
    lock_months,
    meter_spend,
    open_month,
    planned_cost,
)
from commands.policy import Policy
from commands.states import State
from storage.locks import insert_once
from storage.models import CreditHold, CreditMonth, Lease, LedgerEntry, Meter

HOUR_US = HOUR // MICROSECOND

GRANT = "grant"
ADJUSTMENT = "adjustment"
OVERRIDE = "override"


@dataclass(frozen=True)
class MonthBooks:
    month: str
    granted: int
    overrides: int
    spent: int
    committed: int

    @property
    def available(self) -> int:
        return self.granted - self.spent - self.committed

    @property
    def allowance(self) -> int:
        """What may be spent or committed: the grant plus recorded overrides."""
        return self.granted + self.overrides


def ensure_grant(
    session: Session, month: str, policy: Policy, now: datetime, donor: str | None = None
) -> None:
    """Each donor's monthly grant is a ledger row like any other, written once per donor and
    month (the unique key makes a second writer's insert a no-op): `donor`'s, or every
    configured donor's. A donor the configuration no longer names grants nothing."""
    donors = policy.donors() if donor is None else [d for d in [policy.donor(donor)] if d]
    keys = {grant_key(d.name, month): d for d in donors}
    written = session.exec(select(LedgerEntry.key).where(col(LedgerEntry.key).in_(keys))).all()
    missing = keys.keys() - set(written)
    if missing:
        open_month(session, month)
    for key in sorted(missing):
        insert_once(
            session,
            LedgerEntry,
            month=month,
            kind=GRANT,
            amount_cents=keys[key].grant_cents(month),
            actor="system",
            reason=f"monthly credit of {keys[key].name}",
            key=key,
            created_at=now,
            donor=keys[key].name,
        )


def grant_key(donor: str, month: str) -> str:
    return f"grant:{donor}:{month}"


def ledger_totals(
    session: Session, month: str, project: str | None = None, donor: str | None = None
) -> tuple[int, int]:
    """(granted incl. adjustments, overrides) for a month: the lab's (every donor's), one
    donor's, or the rows written against one project's cap (which spans the donors)."""
    query = select(LedgerEntry.kind, func.sum(LedgerEntry.amount_cents)).where(
        LedgerEntry.month == month, LedgerEntry.project == project
    )
    if donor is not None:
        query = query.where(LedgerEntry.donor == donor)
    sums = dict(session.exec(query.group_by(LedgerEntry.kind)).all())
    return sums.get(GRANT, 0) + sums.get(ADJUSTMENT, 0), sums.get(OVERRIDE, 0)


def estimate_cents(count: int, hourly_cents: int, duration: timedelta, policy: Policy) -> int:
    return (
        count * hourly_cents * started_hours(datetime.min, datetime.min + duration + policy.grace)
    )


def books(
    session: Session,
    months: list[str],
    policy: Policy,
    now: datetime,
    project: str | None = None,
    exclude_lease: int | None = None,
    donor: str | None = None,
) -> dict[str, MonthBooks]:
    """The books of several months at once: the lab's, one donor's, or one project's (across
    the donors). Spent counts what running servers have billed so far, which is the one figure
    that reads every running server (in one SQL sum); the credit check needs only
    `used_cents`. `exclude_lease` must be billed to `donor` if one is named."""
    used = used_cents(session, months, now, project, exclude_lease, donor)
    key = LAB if project is None else project
    running = running_spend(session, months, now, project, donor)
    settled = _totals(session, months, key, CreditMonth.settled, donor)
    if exclude_lease is not None:
        own_spent, _ = _lease_parts(session, exclude_lease, now)
        for month, cents in own_spent.items():
            settled[month] = settled.get(month, 0) - cents
    result = {}
    for month in months:
        if project is None:
            ensure_grant(session, month, policy, now, donor)
            granted, overrides = ledger_totals(session, month, donor=donor)
        else:
            _, overrides = ledger_totals(session, month, project)
            granted = policy.project_cap_cents or 0
        spent = settled.get(month, 0) + running[month]
        result[month] = MonthBooks(month, granted, overrides, spent, used[month] - spent)
    return result


def available_cents(
    session: Session,
    months: list[str],
    policy: Policy,
    now: datetime,
    exclude_lease: int | None = None,
    donor: str | None = None,
) -> dict[str, int]:
    """What each month has left (the lab's, or one donor's), from its totals alone (the
    reviewer card's figure)."""
    used = used_cents(session, months, now, exclude_lease=exclude_lease, donor=donor)
    left = {}
    for month in months:
        ensure_grant(session, month, policy, now, donor)
        granted, _ = ledger_totals(session, month, donor=donor)
        left[month] = granted - used[month]
    return left


def used_cents(
    session: Session,
    months: list[str],
    now: datetime,
    project: str | None = None,
    exclude_lease: int | None = None,
    donor: str | None = None,
) -> dict[str, int]:
    """Spent plus committed, per month (the lab's, a donor's, a project's across the donors):
    the months' totals (settled and held), plus the few leases whose servers bill past what
    they hold or whose holds are gone (being reclaimed), reckoned one by one. `exclude_lease`
    leaves one lease out (the one being decided, billed to `donor` if one is named)."""
    key = LAB if project is None else project
    used = {m: 0 for m in months}
    for month, cents in _totals(
        session, months, key, CreditMonth.settled + CreditMonth.held, donor
    ).items():
        used[month] += cents
    for (_, _, month), cents in _beyond_holds(session, now, project, donor).items():
        if month in used:
            used[month] += cents
    if exclude_lease is not None:
        _, own_used = _lease_parts(session, exclude_lease, now)
        for month, cents in own_used.items():
            if month in used:
                used[month] -= cents
    return used


def shortfalls(session: Session, lease: Lease, policy: Policy, now: datetime) -> dict[str, int]:
    """Per month, how far approving (or extending) `lease` as it now stands would go past the
    allowance of its donor's month (`lease.donor`). Empty means it fits. Call inside a write
    transaction, so nobody else commits money between the check and the state change."""
    return _shortfalls(session, lease, policy, now, project=None)


def project_shortfalls(
    session: Session, lease: Lease, policy: Policy, now: datetime
) -> dict[str, int]:
    """The same against the per-project monthly cap, whichever donors pay; empty when there is
    no cap."""
    if policy.project_cap_cents is None:
        return {}
    return _shortfalls(session, lease, policy, now, project=lease.project)


def _shortfalls(
    session: Session, lease: Lease, policy: Policy, now: datetime, project: str | None
) -> dict[str, int]:
    need = planned_cost(lease, policy, now)
    if not need:
        return {}
    months = sorted(need)
    donor = lease.donor if project is None else None
    for month in months:
        ensure_grant(session, month, policy, now, lease.donor)
    lock_months(session, months)
    # A request never held or billed anything: nothing of its own to leave out.
    own = None if lease.state == State.PENDING else lease.id
    used = used_cents(session, months, now, project=project, exclude_lease=own, donor=donor)
    short = {}
    for month in months:
        if project is None:
            granted, overrides = ledger_totals(session, month, donor=donor)
        else:
            _, overrides = ledger_totals(session, month, project)
            granted = policy.project_cap_cents or 0
        short[month] = need[month] - (granted + overrides - used[month])
    return {m: cents for m, cents in short.items() if cents > 0}


def shortfall_words(short: dict[str, int]) -> str:
    """`2026-11 by $17.60, 2026-12 by $3.00`: the months a refusal names."""
    return ", ".join(f"{m} by {format_cents(c)}" for m, c in short.items())


def record_override(
    session: Session,
    lease_id: int,
    short: dict[str, int],
    actor: str,
    reason: str,
    now: datetime,
    project: str | None = None,
    kind: str = OVERRIDE,
    donor: str = FIRST_DONOR,
) -> None:
    """An admin's approval past the donor's month's credit (or, with `project`, past that
    project's cap; with another `kind`, past another limit): one ledger row per month, for the
    amount it goes over, on the lease's donor."""
    for month, cents in short.items():
        session.add(
            LedgerEntry(
                month=month,
                kind=kind,
                amount_cents=cents,
                actor=actor,
                reason=reason,
                lease_id=lease_id,
                project=project,
                created_at=now,
                donor=donor,
            )
        )


def burn_rate_cents_per_day(session: Session, now: datetime, donor: str | None = None) -> int:
    """What the servers running right now (the lab's, or one donor's) cost per day."""
    query = select(func.coalesce(func.sum(Meter.hourly_cents), 0)).where(
        Meter.start_us <= to_us(now)
    )
    if donor is not None:
        query = query.where(Meter.donor == donor)
    return int(session.exec(query).one()) * 24


def runs_out_at(month: MonthBooks, burn_per_day: int, now: datetime) -> datetime | None:
    """When the month's credit runs out at today's burn rate; None if it lasts the month."""
    _, month_end = month_bounds(month.month)
    remaining = month.granted - month.spent
    if burn_per_day <= 0:
        return None
    at = now + timedelta(days=remaining / burn_per_day)
    return at if at < month_end else None


@dataclass
class Tally:
    """Cents per (project, month): spent so far, and still committed by live leases."""

    spent: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    committed: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))


@dataclass(frozen=True)
class MonthTally:
    """The month's tally behind the credit report (commands/credit_report.py): the lab's books,
    each donor's, each project's spent and committed (across the donors), and the burn rate
    (the lab's, and each donor's)."""

    books: MonthBooks
    projects: Tally
    burn_per_day: int  # what the servers running now cost a day
    donors: dict[str, MonthBooks] = field(default_factory=dict)
    donor_burn: dict[str, int] = field(default_factory=dict)


def month_tally(session: Session, month: str, policy: Policy, now: datetime) -> MonthTally:
    """The lab's books, every donor's, every project's, and the burn rate, as `/lab credit`
    and App Home show them: the month's rows of totals, the leases reckoned one by one, and
    one SQL sum over the running servers, grouped by donor and project (the split into spent
    and committed needs it). The donors are the configured ones and any other the month's
    books name (one removed from the configuration while it still had leases)."""
    ensure_grant(session, month, policy, now)
    cents = _billed_by(session, month, now)
    hourly = func.coalesce(
        func.sum(case((Meter.start_us <= to_us(now), Meter.hourly_cents), else_=0)), 0
    )
    running = session.exec(
        select(Meter.donor, Meter.project, cents, hourly).group_by(Meter.donor, Meter.project)
    ).all()
    spent: dict[tuple[str, str], int] = defaultdict(int)  # (donor or LAB, project or LAB)
    used: dict[tuple[str, str], int] = defaultdict(int)
    for donor, name, settled, held in session.exec(
        select(CreditMonth.donor, CreditMonth.project, CreditMonth.settled, CreditMonth.held).where(
            CreditMonth.month == month, CreditMonth.donor != LAB
        )
    ).all():
        for key in ((donor, name), (LAB, name)):
            used[key] += settled + held
            spent[key] += settled
    for (donor, name, key), beyond in _beyond_holds(session, now, None).items():
        if key == month:
            for row in ((donor, name), (LAB, name), (donor, LAB), (LAB, LAB)):
                used[row] += beyond
    burn: dict[str, int] = defaultdict(int)
    for donor, name, billed, per_hour in running:
        for row in ((donor, name), (LAB, name), (donor, LAB), (LAB, LAB)):
            spent[row] += int(billed)
        burn[donor] += 24 * int(per_hour)
    ledger: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for donor, kind, amount in session.exec(
        select(LedgerEntry.donor, LedgerEntry.kind, func.sum(LedgerEntry.amount_cents))
        .where(LedgerEntry.month == month, col(LedgerEntry.project).is_(None))
        .group_by(LedgerEntry.donor, LedgerEntry.kind)
    ).all():
        if kind in (GRANT, ADJUSTMENT, OVERRIDE):
            ledger[donor][kind == OVERRIDE] += int(amount)
    names = [d.name for d in policy.donors()]
    names += sorted(({d for d, _ in used} | set(ledger)) - {LAB, *names})

    def month_books(donor: str, granted: int, overrides: int) -> MonthBooks:
        done = spent.get((donor, LAB), 0)
        return MonthBooks(month, granted, overrides, done, used.get((donor, LAB), 0) - done)

    donors = {d: month_books(d, *ledger[d]) for d in names}
    tally = Tally()
    for donor, name in used.keys() | spent.keys():
        if donor != LAB or name == LAB:
            continue
        if spent.get((LAB, name)):
            tally.spent[name, month] = spent[LAB, name]
        if used.get((LAB, name), 0) - spent.get((LAB, name), 0):
            tally.committed[name, month] = used.get((LAB, name), 0) - spent.get((LAB, name), 0)
    lab = month_books(LAB, sum(g for g, _ in ledger.values()), sum(o for _, o in ledger.values()))
    return MonthTally(lab, tally, sum(burn.values()), donors, {d: burn[d] for d in names})


def running_spend(
    session: Session,
    months: list[str],
    now: datetime,
    project: str | None = None,
    donor: str | None = None,
) -> dict[str, int]:
    """What the running servers (of the lab, or of one project, or one donor's) have billed by
    `now`, per month: per started hour since each came up, never past its backstop, counted in
    SQL."""
    result = {}
    for month in months:
        query = select(_billed_by(session, month, now))
        if project is not None:
            query = query.where(Meter.project == project)
        if donor is not None:
            query = query.where(Meter.donor == donor)
        result[month] = int(session.exec(query).one())
    return result


def _billed_by(session: Session, month: str, now: datetime):
    """SUM over meters of what each billed in `month` by `now`: per meter, the hours started
    from its start until the first of its stop, `now` and the month's end, less those started
    before the month began. This sum reads every running meter, so each costs few operations:
    scalar least/greatest (nested CASEs repeat their operands), the earlier of `now` and the
    month's end taken here, and only the difference clamped at 0 (a count of hours started by
    the end that comes out negative can only make the difference more negative)."""
    least, greatest = _scalar_min_max(session)
    begins, ends = (to_us(t) for t in month_bounds(month))
    until = min(to_us(now), ends)
    end = least(func.coalesce(Meter.stop_us, until), until)
    hours = _hours_started(end) - greatest(_hours_started(begins), 0)
    return func.coalesce(func.sum(greatest(hours, 0) * Meter.hourly_cents), 0)


def _scalar_min_max(session: Session):
    """SQLite's min() and max() with several arguments are scalar; PostgreSQL calls them
    least() and greatest()."""
    if session.get_bind().dialect.name == "postgresql":
        return func.least, func.greatest
    return func.min, func.max


def _hours_started(by):
    """How many hours a meter started before `by` (a SQL expression, or microseconds): when
    `by` is after its start, ceil((by - start) / 1 h), written (by + 1 h - 1 - start) // 1 h so
    that for a constant `by` Python adds the hour once rather than SQL for every meter; before
    its start, a count at most 0 that the caller clamps."""
    return (by + (HOUR_US - 1) - Meter.start_us) // HOUR_US


def _totals(
    session: Session, months: list[str], project: str, column, donor: str | None
) -> dict[str, int]:
    """A column of the months' totals: one donor's, or summed over the donors (a few rows: a
    donor's month is one row, a project's one per applicant class)."""
    query = select(CreditMonth.month, func.sum(column)).where(
        col(CreditMonth.month).in_(months), CreditMonth.project == project
    )
    if donor is not None:
        query = query.where(CreditMonth.donor == donor)
    rows = session.exec(query.group_by(CreditMonth.month)).all()
    return {month: int(cents) for month, cents in rows}


def _beyond_holds(
    session: Session, now: datetime, project: str | None, donor: str | None = None
) -> dict[tuple[str, str, str], int]:
    """Per (donor, project, month), what the totals do not already count: for a live lease
    whose servers may now bill past its holds, the excess; for a lease being reclaimed (its
    holds gone), what its servers still running have billed. Both are few, and found by
    index."""
    overrun = select(CreditHold).where(col(CreditHold.exact_until) < now)
    if project is not None:
        overrun = overrun.where(CreditHold.project == project)
    if donor is not None:
        overrun = overrun.where(CreditHold.donor == donor)
    held: dict[int, dict[str, int]] = defaultdict(dict)
    for row in session.exec(overrun).all():
        held[row.lease_id][row.month] = row.cents
    # Two indexed reads rather than one with OR, which SQLite answers by reading every meter.
    reckoned = [select(Meter).where(col(Meter.held).is_(False))]
    if held:
        reckoned.append(select(Meter).where(col(Meter.lease_id).in_(list(held))))
    if project is not None:
        reckoned = [query.where(Meter.project == project) for query in reckoned]
    if donor is not None:
        reckoned = [query.where(Meter.donor == donor) for query in reckoned]
    billed: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    names: dict[int, tuple[str, str]] = {}
    for meter in (meter for query in reckoned for meter in session.exec(query).all()):
        names[meter.lease_id] = (meter.donor, meter.project)
        for month, cents in meter_spend(meter, now).items():
            billed[meter.lease_id][month] += cents
    result: dict[tuple[str, str, str], int] = defaultdict(int)
    for lease_id, spend in billed.items():
        caps = held.get(lease_id)
        for month, cents in spend.items():
            beyond = cents if caps is None else max(0, cents - caps.get(month, 0))
            result[(*names[lease_id], month)] += beyond
    return result


def _lease_parts(session: Session, lease_id: int, now: datetime) -> tuple[dict, dict]:
    """One lease's own (spent, spent + committed) per month, to leave it out of the books."""
    spent: dict[str, int] = defaultdict(int, lease_settled(session, lease_id))
    used = defaultdict(int, spent)
    caps = {
        row.month: row.cents
        for row in session.exec(select(CreditHold).where(CreditHold.lease_id == lease_id)).all()
    }
    billed: dict[str, int] = defaultdict(int)
    for meter in session.exec(select(Meter).where(Meter.lease_id == lease_id)).all():
        for month, cents in meter_spend(meter, now).items():
            billed[month] += cents
    for month in billed.keys() | caps.keys():
        spent[month] += billed.get(month, 0)
        used[month] += max(caps.get(month, 0), billed.get(month, 0))
    return spent, used


def lease_used(session: Session, lease_id: int, now: datetime) -> dict[str, int]:
    """One lease's spent plus committed per month (the lab's process sums these by class)."""
    return dict(_lease_parts(session, lease_id, now)[1])


def lease_spent(session: Session, lease_id: int, now: datetime) -> int:
    """What one lease has billed by `now`, in cents: its gone servers' and its running ones'."""
    return sum(_lease_parts(session, lease_id, now)[0].values())


def lease_unspent(session: Session, lease_id: int, now: datetime) -> int:
    """What a live lease still holds beyond what it has billed by `now`, in cents: what
    ending it now gives back to its donor's months (its servers stopping within the hour)."""
    spent, used = _lease_parts(session, lease_id, now)
    return sum(used.values()) - sum(spent.values())
