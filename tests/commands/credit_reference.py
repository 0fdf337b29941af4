"""The books as the previous release computed them, kept as the slow reference the ledger's holds
must equal to the cent: every live lease and its servers read and reckoned in Python at each
call.

One change from that release, made in both: a lease that is approved but not yet running plans
its window from the approval (`decided_at`), not from whatever time the books are read, so
what an approval checked is what stays held until the servers are up. Since donors, the books
of one donor are those of the leases billed to it (`Lease.donor`), found from the leases, not
from the donor the books' own rows carry. Since bookings, a booking plans its window from
the lead time before its start to its start plus its length, whenever its servers came up.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlmodel import Session, col, select

from commands.billing import cost_by_month
from commands.credit import MonthBooks, ensure_grant, ledger_totals
from commands.policy import Policy
from commands.reserve import beyond_totals, of_classes
from commands.states import LIVE, State
from storage.models import CreditHold, Lease, Server, ServerSpend


def server_spend(server: Server, lease: Lease, now: datetime) -> dict[str, int]:
    if server.active_at is None:
        return {}
    end = server.deleted_at or now
    if lease.backstop_at is not None:
        end = min(end, lease.backstop_at)
    return cost_by_month(server.active_at, max(end, server.active_at), 1, server.hourly_cents)


def planned_cost(lease: Lease, policy: Policy, now: datetime) -> dict[str, int]:
    length = timedelta(seconds=lease.duration_s + lease.extended_s)
    if lease.book_start is not None:  # a booking: from its lead time to its start + length
        start = lease.starts_at or lease.book_start - policy.lead_time
        end = lease.ends_at or lease.book_start + length
    else:
        start = lease.starts_at or lease.decided_at or now
        end = lease.ends_at or start + length
    return cost_by_month(start, end + policy.grace, lease.count, lease.hourly_cents)


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


def reference_books(
    session: Session,
    months: list[str],
    policy: Policy,
    now: datetime,
    project: str | None = None,
    exclude_lease: int | None = None,
    donor: str | None = None,
) -> dict[str, MonthBooks]:
    spent, committed = reference_tally(
        session, months, policy, now, project, exclude_lease, donor=donor
    )
    result = {}
    for month in months:
        if project is None:
            ensure_grant(session, month, policy, now, donor)
            granted, overrides = ledger_totals(session, month, donor=donor)
        else:
            _, overrides = ledger_totals(session, month, project)
            granted = policy.project_cap_cents or 0
        s = sum(c for (_, m), c in spent.items() if m == month)
        c = sum(c for (_, m), c in committed.items() if m == month)
        result[month] = MonthBooks(month, granted, overrides, s, c)
    return result


def reference_tally(
    session: Session,
    months: list[str],
    policy: Policy,
    now: datetime,
    project: str | None,
    exclude_lease: int | None = None,
    classes: list[str] | None = None,
    donor: str | None = None,
) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]]:
    """(spent, committed) per (project, month), of the leases of `classes` and billed to
    `donor` if given."""
    spent: dict[tuple[str, str], int] = defaultdict(int)
    committed: dict[tuple[str, str], int] = defaultdict(int)
    finished = select(ServerSpend.project, ServerSpend.month, func.sum(ServerSpend.cents)).where(
        col(ServerSpend.month).in_(months)
    )
    if project is not None:
        finished = finished.where(ServerSpend.project == project)
    if exclude_lease is not None:
        finished = finished.where(ServerSpend.lease_id != exclude_lease)
    if classes is not None or donor is not None:
        finished = finished.join(Lease, col(Lease.id) == ServerSpend.lease_id)
    if classes is not None:
        finished = finished.where(col(Lease.applicant_class).in_(classes))
    if donor is not None:
        finished = finished.where(Lease.donor == donor)
    for name, month, cents in session.exec(
        finished.group_by(ServerSpend.project, ServerSpend.month)
    ).all():
        spent[name, month] += cents
    live = select(Lease).where(col(Lease.state).in_([s.value for s in LIVE]))
    ended = (
        select(Lease)
        .join(Server, col(Server.lease_id) == Lease.id)
        .where(
            col(Server.deleted_at).is_(None),
            col(Server.active_at).is_not(None),
            col(Lease.state).not_in([s.value for s in LIVE]),
        )
        .distinct()
    )
    leases = [
        lease
        for query in (live, ended)
        for lease in session.exec(query).all()
        if (project is None or lease.project == project)
        and (classes is None or lease.applicant_class in classes)
        and (donor is None or lease.donor == donor)
        and lease.id != exclude_lease
    ]
    servers: dict[int, list[Server]] = defaultdict(list)
    if leases:
        ids = [lease.id for lease in leases]
        for server in session.exec(select(Server).where(col(Server.lease_id).in_(ids))).all():
            servers[server.lease_id].append(server)
    for lease in leases:
        for server in servers[lease.id]:
            if server.deleted_at is None:
                _add(spent, lease, server_spend(server, lease, now), months)
        _add(committed, lease, lease_commitment(lease, servers[lease.id], policy, now), months)
    return spent, committed


def reference_class_usage(
    session: Session,
    months: list[str],
    now: datetime,
    classes: list[str],
    exclude_lease: int | None = None,
    donor: str | None = None,
) -> dict[str, int]:
    """`commands.reserve.class_usage` as the release before the class totals computed it: the
    classes' holds and settled spend summed by joining each of the months' rows to its lease,
    then the irregular leases reckoned exactly."""
    wanted = of_classes(classes, exclude_lease, donor)
    used = beyond_totals(session, months, now, wanted)
    for table in (CreditHold, ServerSpend):
        for month, cents in session.exec(
            select(table.month, func.sum(table.cents))
            .join(Lease, col(Lease.id) == table.lease_id)
            .where(col(table.month).in_(months), *wanted)
            .group_by(table.month)
        ).all():
            used[month] += int(cents)
    return used


def _add(into: dict, lease: Lease, cents: dict[str, int], months: list[str]) -> None:
    for month, amount in cents.items():
        if month in months:
            into[lease.project, month] += amount


def _sum_months(parts) -> dict[str, int]:
    total: dict[str, int] = defaultdict(int)
    for part in parts:
        for key, cents in part.items():
            total[key] += cents
    return dict(total)
