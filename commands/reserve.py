"""Books: the share of each donor's month kept for other open-source projects, read from the
books.

The decisions are the pure functions of `commands.process`; this module gathers their numbers
with credit's public functions (the donor's month's grant, spent plus committed by class) and
the ledger's reserve overrides, inside the caller's transaction, so an approval's reserve check
and its state change see the same books. Each donor keeps its own share (its `reserved_share`,
else the lab's policy) of its own month; the lab's reserve is the sum of its donors'.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, func
from sqlmodel import Session, col, select

from commands.billing import format_cents
from commands.credit import lease_used, ledger_totals, record_override, shortfall_words
from commands.holds import lease_settled, planned_cost
from commands.policy import Policy
from commands.process import (
    FAVOURED,
    OTHER,
    Reserve,
    format_share,
    reserve,
    reserve_shortfall,
)
from storage.models import ClassMonth, CreditHold, Lease, LedgerEntry, Meter

RESERVE_OVERRIDE = "reserve_override"


def month_reserves(
    session: Session, months: list[str], policy: Policy, now: datetime, donor: str | None = None
) -> dict[str, Reserve]:
    """Kept, used and left of each month's reserve: one donor's, or the lab's (its configured
    donors' summed)."""
    names = [d.name for d in policy.donors()] if donor is None else [donor]
    parts = [_donor_reserves(session, months, policy, now, name) for name in names]
    return {
        m: Reserve(*(sum(getattr(part[m], f) for part in parts) for f in ("kept", "used", "left")))
        for m in months
    }


def _donor_reserves(
    session: Session, months: list[str], policy: Policy, now: datetime, donor: str
) -> dict[str, Reserve]:
    granted = _granted(session, months, donor)
    others = class_usage(session, months, now, [OTHER], donor=donor)
    overridden = _overridden(session, months, donor)
    share = reserved_share(policy, donor)
    return {m: reserve(granted[m], share, others[m], overridden.get(m, 0)) for m in months}


def reserved_share(policy: Policy, donor: str) -> int:
    """The share of the donor's month kept for other open-source projects (basis points): its
    own if the configuration gives one, else the lab's."""
    found = policy.donor(donor)
    if found is None or found.reserved_share is None:
        return policy.reserved_share
    return found.reserved_share


def reserve_shortfalls(
    session: Session, lease: Lease, policy: Policy, now: datetime
) -> dict[str, int]:
    """Per month, how far approving `lease` would eat into the reserve of its donor's month;
    empty when it does not (always empty for other open-source projects, whose share it is)."""
    share = reserved_share(policy, lease.donor)
    if lease.applicant_class not in FAVOURED or share == 0:
        return {}
    need = planned_cost(lease, policy, now)
    months = sorted(need)
    if not months:
        return {}
    granted = _granted(session, months, lease.donor)
    favoured = class_usage(
        session, months, now, sorted(FAVOURED), exclude_lease=lease.id, donor=lease.donor
    )
    overridden = _overridden(session, months, lease.donor)
    short = {
        m: reserve_shortfall(
            lease.applicant_class,
            need[m],
            granted[m],
            share,
            favoured[m],
            overridden.get(m, 0),
        )
        for m in months
    }
    return {m: cents for m, cents in short.items() if cents > 0}


def eat_words(short: dict[str, int], share: int) -> str:
    """`eat into the 20% of the month kept for other open-source projects: 2026-11 by $5.00`"""
    return (
        f"eat into the {format_share(share)} of the month kept for other "
        f"open-source projects: {shortfall_words(short)}"
    )


def record_reserve_override(
    session: Session, lease: Lease, short: dict[str, int], actor: str, reason: str, now: datetime
) -> None:
    """An admin let a foundation or member request into its donor's reserve: one ledger row
    per month, for the amount it takes."""
    record_override(
        session, lease.id, short, actor, reason, now, kind=RESERVE_OVERRIDE, donor=lease.donor
    )


def reserve_words(state: Reserve) -> str:
    return (
        f"kept {format_cents(state.kept)}, used {format_cents(state.used)}, "
        f"left {format_cents(state.left)}"
    )


def class_usage(
    session: Session,
    months: list[str],
    now: datetime,
    classes: list[str],
    exclude_lease: int | None = None,
    donor: str | None = None,
) -> dict[str, int]:
    """Spent plus committed per month by the leases of some applicant classes (billed to one
    donor, or to any): the classes' running totals (their holds and settled spend, what a
    lease uses while its servers bill within its holds), less what those count for the lease
    left out, plus what the few leases whose servers may bill past their holds or whose holds
    are gone (being reclaimed) use beyond them. A handful of rows, however many leases are
    live."""
    used = dict.fromkeys(months, 0)
    query = select(ClassMonth.month, func.sum(ClassMonth.settled + ClassMonth.held)).where(
        col(ClassMonth.month).in_(months), col(ClassMonth.applicant_class).in_(classes)
    )
    if donor is not None:
        query = query.where(ClassMonth.donor == donor)
    for month, cents in session.exec(query.group_by(ClassMonth.month)).all():
        used[month] += int(cents)
    if exclude_lease is not None:
        left_out = session.get(Lease, exclude_lease)
        if (
            left_out is not None
            and left_out.applicant_class in classes
            and donor in (None, left_out.donor)
        ):
            for month, cents in _counted(session, exclude_lease).items():
                if month in used:
                    used[month] -= cents
    beyond = beyond_totals(session, months, now, of_classes(classes, exclude_lease, donor))
    return {m: used[m] + beyond[m] for m in months}


def beyond_totals(
    session: Session, months: list[str], now: datetime, wanted: list[ColumnElement]
) -> dict[str, int]:
    """Per month, what the irregular leases among the `wanted` ones (`of_classes`) use beyond
    their holds plus their settled spend: what the running totals leave out."""
    beyond = dict.fromkeys(months, 0)
    irregular = irregular_leases(session, now)
    chosen = session.exec(select(Lease.id).where(col(Lease.id).in_(irregular), *wanted)).all()
    for lease_id in chosen:
        for month, cents in beyond_counted(session, lease_id, now).items():
            if month in beyond:
                beyond[month] += cents
    return beyond


def of_classes(
    classes: list[str], exclude_lease: int | None = None, donor: str | None = None
) -> list[ColumnElement]:
    """The conditions on `Lease` that choose the leases of some classes (billed to one donor,
    or to any), less one."""
    wanted = [col(Lease.applicant_class).in_(classes)]
    if exclude_lease is not None:
        wanted.append(col(Lease.id) != exclude_lease)
    if donor is not None:
        wanted.append(col(Lease.donor) == donor)
    return wanted


def irregular_leases(session: Session, now: datetime) -> set[int]:
    """Leases whose servers may bill past their holds, or whose holds are gone: the few that
    holds plus settled spend do not describe exactly."""
    found = set(session.exec(select(Meter.lease_id).where(col(Meter.held).is_(False))).all())
    return found | set(
        session.exec(select(CreditHold.lease_id).where(col(CreditHold.exact_until) < now)).all()
    )


def beyond_counted(session: Session, lease_id: int, now: datetime) -> dict[str, int]:
    """Per month, what one irregular lease uses beyond its holds plus its settled spend."""
    exact = lease_used(session, lease_id, now)
    counted = _counted(session, lease_id)
    return {m: exact.get(m, 0) - counted.get(m, 0) for m in exact.keys() | counted.keys()}


def _counted(session: Session, lease_id: int) -> dict[str, int]:
    """What the running totals count for one lease: its holds plus its settled spend."""
    counted = dict(lease_settled(session, lease_id))
    for row in session.exec(select(CreditHold).where(CreditHold.lease_id == lease_id)).all():
        counted[row.month] = counted.get(row.month, 0) + row.cents
    return counted


def _granted(session: Session, months: list[str], donor: str) -> dict[str, int]:
    """The donor's months' grants and adjustments, from the ledger alone: the callers have read
    (and so written) the months' grants already, so walking the live leases again would only
    repeat it."""
    return {m: ledger_totals(session, m, donor=donor)[0] for m in months}


def _overridden(session: Session, months: list[str], donor: str) -> dict[str, int]:
    rows = session.exec(
        select(LedgerEntry.month, func.sum(LedgerEntry.amount_cents))
        .where(
            LedgerEntry.kind == RESERVE_OVERRIDE,
            col(LedgerEntry.month).in_(months),
            LedgerEntry.donor == donor,
        )
        .group_by(LedgerEntry.month)
    ).all()
    return dict(rows)
