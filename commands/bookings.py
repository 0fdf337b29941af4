"""Lease life: a booking between its approval and its start, and what is said of it.

A booking is a lease with a start ahead (`Lease.book_start`). Approved, it waits in `approved`
with its `due_at` on the next moment it needs the sweep: the day-before DM, then the lead time
(`Policy.prepare_from`: LABBOT_LEAD_TIME before the start), when the sweep provisions it as it
does any approved lease. The sweep claims each lease before stepping it, and the day-before DM
is marked once, so however many replicas sweep, each booking is told once. A booking whose
servers cannot be created in time (the provider out of capacity, or failing) is told to its
owner and the admins at once, not at its start. Also here: the project's bookings ahead (the
hoarding cap) and a booking sitting back to back with the project's earlier lease of its plan.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session, col, func, select

from commands.facts import shape, when
from commands.lab import Lab, audit_all
from commands.markers import once
from commands.notices import ADMIN, Draft, Kind, enqueue, enqueue_all, owner
from commands.policy import Policy
from commands.states import LIVE, State
from storage.locks import locked_all
from storage.models import Lease

DAY_BEFORE = timedelta(days=1)
BACK_TO_BACK = timedelta(hours=1)  # an earlier lease ending this close to a start sits beside it
AHEAD = (State.PENDING, State.APPROVED)  # a booking not yet begun: it counts against the cap


def waiting(lease: Lease, policy: Policy, now: datetime) -> bool:
    """An approved booking whose servers are not to be created yet."""
    return lease.book_start is not None and now < policy.prepare_from(lease.book_start)


def day_before_at(lease: Lease) -> datetime:
    return lease.book_start - DAY_BEFORE


def next_due(lease: Lease, policy: Policy, now: datetime, told: bool) -> datetime:
    """When an approved booking next needs the sweep: its day-before DM (unless told, or the
    booking was decided within the day before its start: the decision said when), then the
    moment its servers are to be created."""
    prepare = policy.prepare_from(lease.book_start)
    decided = lease.decided_at or now
    if not told and decided < day_before_at(lease) and day_before_at(lease) < prepare:
        return day_before_at(lease)
    return prepare


def start_words(lease: Lease, policy: Policy) -> str:
    """` It starts <date>; its servers will be prepared from <date>.`; "" for a lease that
    starts when approved."""
    if lease.book_start is None:
        return ""
    return (
        f" It starts {when(lease.book_start)}; its servers will be prepared from "
        f"{when(policy.prepare_from(lease.book_start))}."
    )


def await_start(lab: Lab, leases: list[Lease], now: datetime) -> dict[int, str]:
    """The sweep's step for approved bookings before their lead time: the day-before DM when it
    is due (once), and each booking's next deadline. One transaction for all."""
    ids = [lease.id for lease in leases]
    outcomes = {lease_id: "changed meanwhile" for lease_id in ids}
    with lab.db.write() as session:
        fresh = [
            lease
            for lease in locked_all(session, Lease, ids)
            if lease.state == State.APPROVED and waiting(lease, lab.policy, now)
        ]
        drafts, told = [], {}
        for lease in fresh:
            due = now >= day_before_at(lease)
            decided_ahead = lease.decided_at is not None and lease.decided_at < day_before_at(lease)
            if due and decided_ahead and once(session, f"day-before:{lease.id}", now):
                drafts.append(_day_before(lease, lab.policy))
                told[lease.id] = {"starts": lease.book_start}
            lease.due_at = next_due(lease, lab.policy, now, told=due)
            session.add(lease)
            outcomes[lease.id] = "told the day before" if lease.id in told else "waits to start"
        audit_all(session, now, "system", "day_before", told)
        enqueue_all(session, drafts, now)
    return outcomes


def _day_before(lease: Lease, policy: Policy) -> Draft:
    return Draft(
        Kind.DAY_BEFORE,
        owner(lease.owner),
        f"Your booking #{lease.id} ({shape(lease)}) starts tomorrow: {when(lease.book_start)}. "
        f"Your servers will be prepared from {when(policy.prepare_from(lease.book_start))}, "
        "and you will get a DM when they are ready.",
        lease.id,
        {"starts_at": lease.book_start.isoformat()},
    )


def warn_late(session: Session, lease: Lease, reason: str, now: datetime) -> None:
    """A booking's servers cannot be created now, before its start: its owner and the admins
    are told at once (once a booking), while labbot keeps trying until the provisioning
    deadline."""
    if lease.book_start is None or now >= lease.book_start:
        return
    if not once(session, f"booking-late:{lease.id}", now):
        return
    text = (
        f"Booking #{lease.id} ({shape(lease)}) may not be ready at its start, "
        f"{when(lease.book_start)}: {reason}. labbot keeps trying; if the servers cannot be "
        "created the booking fails and its credit is released."
    )
    enqueue(session, Kind.BOOKING_LATE, owner(lease.owner), text, now, lease.id)
    enqueue(session, Kind.ADMIN_ALERT, ADMIN, text, now, lease.id, alert="booking_late")


def bookings_ahead(session: Session, project: str, now: datetime) -> int:
    """The project's bookings not begun yet: waiting for a decision or approved ahead."""
    return session.exec(
        select(func.count()).where(
            Lease.project == project,
            col(Lease.state).in_(AHEAD),
            col(Lease.book_start) > now,
        )
    ).one()


def back_to_back(session: Session, lease: Lease) -> str:
    """A sentence for reviewers when the booking would follow (or overlap) the same project's
    earlier lease of the same plan, within BACK_TO_BACK of its end; "" otherwise."""
    if lease.book_start is None:
        return ""
    earlier = session.exec(
        select(Lease)
        .where(
            Lease.project == lease.project,
            Lease.plan == lease.plan,
            col(Lease.id) != lease.id,
            col(Lease.state).in_([State.PENDING, *LIVE]),
        )
        .order_by(col(Lease.id))
    ).all()
    for other in earlier:
        begins, ends = _window(other)
        if begins < lease.book_start and ends >= lease.book_start - BACK_TO_BACK:
            return (
                f"back to back with #{other.id} of the same project and plan, which ends "
                f"{when(ends)}: together they hold {lease.plan} without a break"
            )
    return ""


def _window(lease: Lease) -> tuple[datetime, datetime]:
    """When a lease holds its servers: its real window once active, else the planned one."""
    length = timedelta(seconds=lease.duration_s + lease.extended_s)
    begins = lease.starts_at or lease.book_start or lease.decided_at or lease.created_at
    return begins, lease.ends_at or (lease.book_start or begins) + length
