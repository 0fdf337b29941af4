"""Lease life: a donor's end, told ahead, and the leases a donor still pays for.

A donor's credit ends on a date (`Donor.ends_at`). The admins are told 30 days and 7 days
before, once each across replicas (a marker per donor, end and warning; the check is claimed by
one replica a period, as the credit alerts are), with the live leases it pays for, so they can
find the lab other money or let the leases end. A lab with no donor ending soon does no
database work for this at all. The same question, which leases a donor pays for, also guards
start-up: a donor removed from the configuration while it pays for leases stops it.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from commands.donors import Donor
from commands.durations import format_duration
from commands.facts import one_line, when
from commands.lab import Lab
from commands.markers import once
from commands.notices import ADMIN, Kind, enqueue
from commands.pages import not_shown
from commands.states import LIVE, RECLAIMING, TERMINAL, State
from storage.claims import claim_period
from storage.models import Lease

DONOR_ALERTS = "donor-alerts"
DONOR_CHECK = timedelta(minutes=10)
WARN_BEFORE = (timedelta(days=30), timedelta(days=7))
MOST_LISTED = 20  # leases named in one alert; the rest are counted
# Leases that still need their donor's account: waiting, holding credit, or being deleted.
STILL_PAID_FOR = frozenset({State.PENDING}) | LIVE | (RECLAIMING - TERMINAL)


def donor_alerts(lab: Lab, now: datetime) -> None:
    """Tell the admins, once per donor and warning, that a donor's credit ends within 30 (or
    7) days; the nearest warning only, for a donor configured when both had passed."""
    due = {
        donor.name: (donor, crossed)
        for donor in lab.policy.donors()
        if (crossed := _crossed(donor, now))
    }
    if not due:
        return
    with lab.db.write() as session:
        if not claim_period(session, DONOR_ALERTS, lab.replica, now, DONOR_CHECK):
            return
        for donor, crossed in due.values():
            fresh = [ahead for ahead in crossed if once(session, _marker(donor, ahead), now)]
            if crossed[0] in fresh:
                _tell(session, donor, crossed[0], now)


def _crossed(donor: Donor, now: datetime) -> list[timedelta]:
    """The warnings whose time has come before the donor's end, nearest the end first."""
    if donor.ends_at is None or now >= donor.ends_at:
        return []
    return sorted(ahead for ahead in WARN_BEFORE if now >= donor.ends_at - ahead)


def _marker(donor: Donor, ahead: timedelta) -> str:
    # The end is in the key: a donor whose credit is extended is warned again for its new end.
    return f"donor-end:{donor.name}:{donor.ends_at:%Y-%m-%dT%H:%M}:{format_duration(ahead)}"


def _tell(session: Session, donor: Donor, ahead: timedelta, now: datetime) -> None:
    leases = paid_by(session, [donor.name], LIVE)
    days = -((now - donor.ends_at) // timedelta(days=1))  # whole days left, rounded up
    lines = [one_line(lease, now) for lease in leases[:MOST_LISTED]]
    lines += not_shown(len(leases) - MOST_LISTED, "the public report lists every lease")
    pays = (
        f"It pays for {len(leases)} live lease{'s' if len(leases) != 1 else ''}:\n"
        + "\n".join(lines)
        if leases
        else "It pays for no live lease."
    )
    enqueue(
        session,
        Kind.ADMIN_ALERT,
        ADMIN,
        f"Donor {donor.name}'s credit ends {when(donor.ends_at)}, "
        f"in {days} day{'s' if days != 1 else ''}. {pays}",
        now,
        alert="donor-end",
        donor=donor.name,
        days=ahead.days,
    )


def paid_by(session: Session, donors: Collection[str], states: Collection[State]) -> list[Lease]:
    """The leases in `states` billed to any of `donors`, oldest first (Lease.donor is indexed)."""
    return list(
        session.exec(
            select(Lease)
            .where(col(Lease.donor).in_(donors), col(Lease.state).in_(states))
            .order_by(col(Lease.id))
        ).all()
    )


def unconfigured(session: Session, donors: Collection[str]) -> dict[str, list[int]]:
    """Leases still paid for by a donor not in `donors` (the configured ones): {donor: ids}."""
    rows = session.exec(
        select(Lease.donor, Lease.id)
        .where(col(Lease.donor).not_in(donors), col(Lease.state).in_(STILL_PAID_FOR))
        .order_by(col(Lease.donor), col(Lease.id))
    ).all()
    found: dict[str, list[int]] = {}
    for donor, lease_id in rows:
        found.setdefault(donor, []).append(lease_id)
    return found
