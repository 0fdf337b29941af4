"""The month's money: granted, spent, committed, available, per month and per project.

Spent is what servers have billed (per started hour, from `active_at` until deleted or now);
committed is what live leases will still bill until their planned end plus grace; available is
what is left. `granted = spent + committed + available` holds to the cent by construction, and
approval and extension refuse anything that would make available negative for any month unless
an admin records an override in the ledger.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlmodel import Session, col, select

from commands.billing import cost_by_month, format_cents, month_bounds, started_hours
from commands.policy import Policy
from commands.states import LIVE, State
from storage.models import Lease, LedgerEntry, Server, ServerSpend

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


def ensure_grant(session: Session, month: str, policy: Policy, now: datetime) -> None:
    """The monthly grant is a ledger row like any other, written once per month (the unique
    key makes a second writer's insert a no-op)."""
    key = f"grant:{month}"
    if session.exec(select(LedgerEntry.id).where(LedgerEntry.key == key)).first() is None:
        session.add(
            LedgerEntry(
                month=month,
                kind=GRANT,
                amount_cents=policy.monthly_credit_cents,
                actor="system",
                reason="monthly donor credit",
                key=key,
                created_at=now,
            )
        )
        session.flush()


def ledger_totals(session: Session, month: str, project: str | None = None) -> tuple[int, int]:
    """(granted incl. adjustments, overrides) for a month: the lab's, or the rows written
    against one project's cap."""
    rows = session.exec(
        select(LedgerEntry.kind, func.sum(LedgerEntry.amount_cents))
        .where(LedgerEntry.month == month, LedgerEntry.project == project)
        .group_by(LedgerEntry.kind)
    ).all()
    sums = dict(rows)
    return sums.get(GRANT, 0) + sums.get(ADJUSTMENT, 0), sums.get(OVERRIDE, 0)


def server_spend(server: Server, lease: Lease, now: datetime) -> dict[str, int]:
    """A server bills until it is deleted; one not yet confirmed deleted bills until now, but
    never past its lease's provider backstop, when the provider deletes it by itself."""
    if server.active_at is None:
        return {}
    end = billing_stops(lease, server.deleted_at or now)
    return cost_by_month(server.active_at, max(end, server.active_at), 1, server.hourly_cents)


def billing_stops(lease: Lease, gone_by: datetime) -> datetime:
    """When a server known to be gone by `gone_by` stopped billing: the provider's backstop
    deleted it then, if that came first."""
    if lease.backstop_at is None:
        return gone_by
    return min(gone_by, lease.backstop_at)


def planned_window(lease: Lease, policy: Policy, now: datetime) -> tuple[datetime, datetime]:
    """When the lease's servers will run: from start (or now, before they are up) to the planned
    end plus grace, because servers bill until they are deleted."""
    start = lease.starts_at or now
    end = lease.ends_at or start + timedelta(seconds=lease.duration_s + lease.extended_s)
    return start, end + policy.grace


def planned_cost(lease: Lease, policy: Policy, now: datetime) -> dict[str, int]:
    start, end = planned_window(lease, policy, now)
    return cost_by_month(start, end, lease.count, lease.hourly_cents)


def estimate_cents(count: int, hourly_cents: int, duration: timedelta, policy: Policy) -> int:
    return (
        count * hourly_cents * started_hours(datetime.min, datetime.min + duration + policy.grace)
    )


def lease_commitment(
    lease: Lease, servers: list[Server], policy: Policy, now: datetime
) -> dict[str, int]:
    """What a live lease will still bill, per month: planned minus already spent."""
    if State(lease.state) not in LIVE:
        return {}
    spent = _sum_months(server_spend(s, lease, now) for s in servers)
    return {
        key: cents - spent.get(key, 0)
        for key, cents in planned_cost(lease, policy, now).items()
        if cents > spent.get(key, 0)
    }


def books(
    session: Session,
    months: list[str],
    policy: Policy,
    now: datetime,
    project: str | None = None,
    exclude_lease: int | None = None,
) -> dict[str, MonthBooks]:
    """The books of several months at once, optionally for one project."""
    tally = _tally(session, months, policy, now, project, exclude_lease)
    spent: dict[str, int] = defaultdict(int)
    committed: dict[str, int] = defaultdict(int)
    for (_, month), cents in tally.spent.items():
        spent[month] += cents
    for (_, month), cents in tally.committed.items():
        committed[month] += cents
    result = {}
    for month in months:
        if project is None:
            ensure_grant(session, month, policy, now)
            granted, overrides = ledger_totals(session, month)
        else:
            _, overrides = ledger_totals(session, month, project)
            granted = policy.project_cap_cents or 0
        result[month] = MonthBooks(month, granted, overrides, spent[month], committed[month])
    return result


def shortfalls(session: Session, lease: Lease, policy: Policy, now: datetime) -> dict[str, int]:
    """Per month, how far approving (or extending) `lease` as it now stands would go past the
    month's allowance. Empty means it fits. Call inside a write transaction, so nobody else
    commits money between the check and the state change."""
    return _shortfalls(session, lease, policy, now, project=None)


def project_shortfalls(
    session: Session, lease: Lease, policy: Policy, now: datetime
) -> dict[str, int]:
    """The same against the per-project monthly cap; empty when there is no cap."""
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
    month_books = books(session, months, policy, now, project=project, exclude_lease=lease.id)
    short = {
        m: need[m] - (month_books[m].allowance - month_books[m].spent - month_books[m].committed)
        for m in months
    }
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
) -> None:
    """An admin's approval past the month's credit (or, with `project`, past that project's
    cap; with another `kind`, past another limit): one ledger row per month, for the amount it
    goes over."""
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
            )
        )


def burn_rate_cents_per_day(session: Session, now: datetime) -> int:
    """What the servers running right now cost per day."""
    hourly = session.exec(
        select(func.coalesce(func.sum(Server.hourly_cents), 0)).where(
            col(Server.active_at).is_not(None),
            col(Server.active_at) <= now,
            col(Server.deleted_at).is_(None),
        )
    ).one()
    return int(hourly) * 24


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


def _tally(
    session: Session,
    months: list[str],
    policy: Policy,
    now: datetime,
    project: str | None = None,
    exclude_lease: int | None = None,
    classes: Collection[str] | None = None,
) -> Tally:
    """Three indexed reads: what deleted servers billed (summed in SQL), the live leases with
    their servers, and the servers of ended leases still billing. None of them grows with the
    lab's history."""
    tally = Tally()
    wanted = set(months)
    finished = select(ServerSpend.project, ServerSpend.month, func.sum(ServerSpend.cents)).where(
        col(ServerSpend.month).in_(months)
    )
    if project is not None:
        finished = finished.where(ServerSpend.project == project)
    if exclude_lease is not None:
        finished = finished.where(ServerSpend.lease_id != exclude_lease)
    if classes is not None:
        finished = finished.join(Lease, col(Lease.id) == ServerSpend.lease_id).where(
            col(Lease.applicant_class).in_(classes)
        )
    for name, month, cents in session.exec(
        finished.group_by(ServerSpend.project, ServerSpend.month)
    ).all():
        tally.spent[name, month] += cents
    for lease, servers in _live_leases(session, project, exclude_lease, classes):
        running = [s for s in servers if s.deleted_at is None]
        _add(tally.spent, lease, _sum_months(server_spend(s, lease, now) for s in running), wanted)
        _add(tally.committed, lease, lease_commitment(lease, servers, policy, now), wanted)
    for server, lease in _running_servers_of_ended_leases(session, project, exclude_lease, classes):
        _add(tally.spent, lease, server_spend(server, lease, now), wanted)
    return tally


def _add(
    into: dict[tuple[str, str], int], lease: Lease, cents: dict[str, int], wanted: set[str]
) -> None:
    for month, amount in cents.items():
        if month in wanted:
            into[lease.project, month] += amount


def class_usage(
    session: Session,
    months: list[str],
    policy: Policy,
    now: datetime,
    classes: Collection[str],
    exclude_lease: int | None = None,
) -> dict[str, int]:
    """Spent plus committed per month by the leases of some applicant classes (the lab's
    process keeps a share of each month from the favoured ones)."""
    tally = _tally(session, months, policy, now, exclude_lease=exclude_lease, classes=classes)
    used = dict.fromkeys(months, 0)
    for (_, month), cents in [*tally.spent.items(), *tally.committed.items()]:
        used[month] += cents
    return used


def project_tally(session: Session, month: str, policy: Policy, now: datetime) -> Tally:
    """The month's spent and committed money of every project at once."""
    return _tally(session, [month], policy, now)


def _running_servers_of_ended_leases(
    session: Session,
    project: str | None,
    exclude_lease: int | None,
    classes: Collection[str] | None = None,
) -> list[tuple[Server, Lease]]:
    """Servers still billing for leases that are over (being released, expiring,
    quarantined, failed): the few the live leases do not already account for."""
    query = (
        select(Server, Lease)
        .join(Lease, col(Lease.id) == Server.lease_id)
        .where(
            col(Server.deleted_at).is_(None),
            col(Server.active_at).is_not(None),
            col(Lease.state).not_in([s.value for s in LIVE]),
        )
    )
    return list(session.exec(_lease_filter(query, project, exclude_lease, classes)).all())


def _lease_filter(query, project, exclude_lease, classes):
    """Narrow a query on Lease to one project, without one lease, to some applicant classes."""
    if project is not None:
        query = query.where(Lease.project == project)
    if exclude_lease is not None:
        query = query.where(col(Lease.id) != exclude_lease)
    if classes is not None:
        query = query.where(col(Lease.applicant_class).in_(classes))
    return query


def _live_leases(
    session: Session,
    project: str | None,
    exclude_lease: int | None,
    classes: Collection[str] | None = None,
) -> list[tuple[Lease, list[Server]]]:
    query = select(Lease).where(col(Lease.state).in_([s.value for s in LIVE]))
    leases = session.exec(_lease_filter(query, project, exclude_lease, classes)).all()
    servers: dict[int, list[Server]] = defaultdict(list)
    if leases:
        rows = session.exec(
            select(Server).where(col(Server.lease_id).in_([lease.id for lease in leases]))
        ).all()
        for row in rows:
            servers[row.lease_id].append(row)
    return [(lease, servers[lease.id]) for lease in leases]


def settle_spend(session: Session, server: Server, lease: Lease) -> None:
    """Write down, once, what a server that is now gone billed in each month."""
    if server.active_at is None or server.deleted_at is None:
        return
    for month, cents in server_spend(server, lease, server.deleted_at).items():
        session.merge(
            ServerSpend(
                server_id=server.id,
                month=month,
                lease_id=lease.id,
                project=lease.project,
                cents=cents,
            )
        )


def _sum_months(parts) -> dict[str, int]:
    total: dict[str, int] = defaultdict(int)
    for part in parts:
        for key, cents in part.items():
            total[key] += cents
    return dict(total)
