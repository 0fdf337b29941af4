"""Credit invariants under random sequences of request, approve (with and without an admin's
override), extend, release and sweep at random times, on SQLite and on PostgreSQL (one database
per test, emptied before each example):

- granted = spent + committed + available for every month, to the cent;
- an approval or extension without override never leaves a month committed past its grant;
  one with override leaves a ledger row for exactly what the month lacked;
- spent never goes down; an early release refunds exactly what the lease still held.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st
from sqlmodel import SQLModel, select

from commands.credit import OVERRIDE, books
from commands.extend import extend
from commands.lab import Lab
from commands.policy import Policy
from commands.reclaim import release
from commands.request import request
from commands.review import approve
from commands.sweep import sweep
from fakes.notifier import RecordingNotifier
from metal.simulated import SimulatedProvider
from storage.db import Database
from storage.models import Lease, LedgerEntry, Server
from tests.commands.credit_reference import lease_commitment
from tests.conftest import ADMIN, OWNER, REVIEWER, ROLES, Clock, request_input
from tests.properties import on_a_database

MONTHS = ["2026-11", "2026-12", "2027-01"]
START = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
POLICY = Policy(
    monthly_credit_cents=10_000,
    pending_per_user=100,
    max_lease=timedelta(days=5),
    max_total=timedelta(days=6),
)


def fresh_lab(db: Database) -> tuple[Lab, Clock]:
    """The test's database emptied (creating a database per example would cost more than the
    example on PostgreSQL), and a lab at START on it."""
    with db.write() as session:
        for table in reversed(SQLModel.metadata.sorted_tables):
            session.execute(table.delete())
    clock = Clock(START)
    provider = SimulatedProvider(db, clock=clock, provision_seconds=120)
    return Lab(db, provider, RecordingNotifier(), POLICY, ROLES), clock


def month_books(lab: Lab, now: datetime):
    with lab.db.write() as session:
        return books(session, MONTHS, lab.policy, now)


def overrides(lab: Lab) -> list[LedgerEntry]:
    with lab.db.read() as session:
        return list(session.exec(select(LedgerEntry).where(LedgerEntry.kind == OVERRIDE)).all())


def commitment(lab: Lab, lease_id: int, now: datetime) -> dict[str, int]:
    with lab.db.read() as session:
        lease = session.get(Lease, lease_id)
        rows = list(session.exec(select(Server).where(Server.lease_id == lease_id)).all())
    return lease_commitment(lease, rows, lab.policy, now)


operations = st.lists(
    st.tuples(
        st.sampled_from(["request", "approve", "override", "extend", "release", "sweep"]),
        st.integers(0, 7),  # which lease / how many servers
        st.integers(1, 80),  # hours
        st.integers(0, 3 * 24 * 60),  # minutes to wait first: up to a bot down for days
    ),
    min_size=4,
    max_size=16,
)


@on_a_database(25)
@given(ops=operations)
def test_credit_invariants(db, ops):
    lab, clock = fresh_lab(db)
    run(lab, clock, ops)


def run(lab: Lab, clock: Clock, ops) -> None:
    ids: list[int] = []
    spent_before = {m: 0 for m in MONTHS}
    for kind, which, hours, wait in ops:
        clock.advance(minutes=wait)
        now = clock.now
        lease_id = ids[which % len(ids)] if ids else None
        before = month_books(lab, now)
        checked = False
        if kind == "request":
            plan = "c1.small.x86" if which % 2 else "t1.small.x86"
            outcome = request(
                lab,
                OWNER,
                request_input(plan=plan, count=which % 3 + 1, duration=timedelta(hours=hours)),
                now,
            )
            if outcome.ok:
                ids.append(outcome.lease_id)
        elif kind in ("approve", "override") and lease_id is not None:
            already = len(overrides(lab))
            if kind == "approve":
                outcome = approve(lab, REVIEWER, lease_id, now)
            else:
                outcome = approve(lab, ADMIN, lease_id, now, override="property test")
            checked = outcome.ok
            if outcome.ok and kind == "approve":
                assert len(overrides(lab)) == already
        elif kind == "extend" and lease_id is not None:
            outcome = extend(lab, OWNER, lease_id, timedelta(hours=hours), now)
            checked = outcome.ok and "needs a reviewer" not in outcome.message
        elif kind == "release" and lease_id is not None:
            held = commitment(lab, lease_id, now)
            outcome = release(lab, OWNER, lease_id, now)
            if outcome.ok:
                after = month_books(lab, now)
                for m in MONTHS:
                    # Every server is gone at `now`: what it spent stays, the rest comes back.
                    assert after[m].spent == before[m].spent, m
                    assert after[m].available == before[m].available + held.get(m, 0), m
        elif kind == "sweep":
            sweep(lab, now)

        after = month_books(lab, now)
        for m in MONTHS:
            book = after[m]
            assert book.granted == book.spent + book.committed + book.available
            assert book.granted == lab.policy.monthly_credit_cents
            assert book.committed >= 0
            assert book.spent >= spent_before[m], f"spent went down in {m}"
            spent_before[m] = book.spent
            if checked:
                # Right after a decision that took money: no month past its allowance, and
                # the allowance beyond the grant is only what admins recorded.
                assert book.spent + book.committed <= book.allowance, (kind, m, book)
        recorded = sum(e.amount_cents for e in overrides(lab))
        assert recorded == sum(after[m].overrides for m in MONTHS)
        assert all(e.actor == ADMIN and e.reason == "property test" for e in overrides(lab))
