"""Books: the shares of a donor's month earmarked for named projects or applicant classes.

A donor may keep part of its month for chosen projects or classes (`Donor.earmarks`): leases
that no such earmark serves may together take at most the month less what the earmarks they
are not served by keep, as the reserve keeps a share for other open-source projects. What the
served leases use is read from the donor's totals (each project's per applicant class, so a
lease both of a named project and of a named class counts once), plus the few leases reckoned
one by one, inside the caller's transaction.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from commands.credit import ledger_totals, record_override, shortfall_words, used_cents
from commands.donors import Earmark
from commands.holds import planned_cost
from commands.policy import Policy
from commands.process import kept_cents
from commands.reserve import beyond_totals, overridden_cents
from storage.models import ClassMonth, CreditMonth, Lease

EARMARK_OVERRIDE = "earmark_override"


def apart_from(lease: Lease, policy: Policy) -> list[Earmark]:
    """The earmarks of the lease's donor that do not serve it."""
    donor = policy.donor(lease.donor)
    if donor is None:
        return []
    return [e for e in donor.earmarks if not e.serves(lease.project, lease.applicant_class)]


def earmark_shortfalls(
    session: Session, lease: Lease, policy: Policy, now: datetime
) -> dict[str, int]:
    """Per month, how far approving `lease` would take what its donor's earmarks keep for
    others; empty when it would not (always empty for a lease every earmark serves)."""
    apart = apart_from(lease, policy)
    need = planned_cost(lease, policy, now)
    months = sorted(need)
    if not apart or not months:
        return {}
    projects = frozenset().union(*(e.projects for e in apart))
    classes = frozenset().union(*(e.classes for e in apart))
    used = used_cents(session, months, now, exclude_lease=lease.id, donor=lease.donor)
    served = served_usage(session, months, now, lease.donor, projects, classes)
    overridden = overridden_cents(session, months, lease.donor, EARMARK_OVERRIDE)
    short = {}
    for month in months:
        granted, _ = ledger_totals(session, month, donor=lease.donor)
        kept = sum(kept_cents(granted, e.share) for e in apart)
        allowance = granted - kept + overridden.get(month, 0)
        short[month] = used[month] - served[month] + need[month] - allowance
    return {m: cents for m, cents in short.items() if cents > 0}


def served_usage(
    session: Session,
    months: list[str],
    now: datetime,
    donor: str,
    projects: frozenset[str],
    classes: frozenset[str],
) -> dict[str, int]:
    """Spent plus committed per month of the donor's leases of the named projects or classes:
    the projects' totals plus the classes' less the projects' of those classes (counted in
    both), plus what the irregular ones among them use beyond their totals."""
    used = dict.fromkeys(months, 0)
    in_projects = func.lower(CreditMonth.project).in_(projects)
    in_classes = col(CreditMonth.applicant_class).in_(classes)
    for sign, table, wanted in (
        (1, CreditMonth, [in_projects]),
        (1, ClassMonth, [col(ClassMonth.applicant_class).in_(classes)]),
        (-1, CreditMonth, [in_projects, in_classes]),
    ):
        for month, cents in session.exec(
            select(table.month, func.sum(table.settled + table.held))
            .where(col(table.month).in_(months), table.donor == donor, *wanted)
            .group_by(table.month)
        ).all():
            used[month] += sign * int(cents)
    chosen = [
        col(Lease.donor) == donor,
        or_(func.lower(Lease.project).in_(projects), col(Lease.applicant_class).in_(classes)),
    ]
    beyond = beyond_totals(session, months, now, chosen)
    return {m: used[m] + beyond[m] for m in months}


def earmark_words(short: dict[str, int], lease: Lease, policy: Policy) -> str:
    """`take what arm keeps for envoy: 2026-11 by $5.00`"""
    kept_for = sorted({name for e in apart_from(lease, policy) for name in e.projects | e.classes})
    return f"take what {lease.donor} keeps for {', '.join(kept_for)}: {shortfall_words(short)}"


def record_earmark_override(
    session: Session, lease: Lease, short: dict[str, int], actor: str, reason: str, now: datetime
) -> None:
    """An admin let a lease into what its donor's earmarks keep: one ledger row per month, for
    the amount it takes."""
    record_override(
        session, lease.id, short, actor, reason, now, kind=EARMARK_OVERRIDE, donor=lease.donor
    )
