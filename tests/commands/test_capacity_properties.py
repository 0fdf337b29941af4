"""The capacity calendar under random sequences of requests, approvals, bookings ahead,
extensions, releases, cancellations and expiries on one plan and metro, at random times, on
SQLite and on PostgreSQL:

- the servers held or booked never exceed the capacity at any moment from now on (counted by
  walking every lease, which the product never does);
- the books stay exact: what the calendar's indexed read finds over the coming weeks is what
  walking every live lease finds, and no lease that has ended keeps a row.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st
from sqlmodel import select

from commands.capacity import held, misfit, window
from commands.extend import extend
from commands.reclaim import release
from commands.request import cancel, request
from commands.review import approve
from commands.states import LIVE, State
from commands.sweep import sweep
from storage.models import CapacityDay, Lease
from tests.commands.test_capacity import METRO, PLAN, booked
from tests.commands.test_credit_properties import fresh_lab
from tests.conftest import OWNER, REVIEWER, request_input, with_policy
from tests.properties import on_a_database

CAPACITY = 6

operations = st.lists(
    st.tuples(
        st.sampled_from(["request", "approve", "book", "extend", "release", "cancel", "sweep"]),
        st.integers(0, 7),  # which lease / how many servers
        st.integers(1, 60),  # hours
        st.integers(0, 2 * 24 * 60),  # minutes to wait first
    ),
    min_size=4,
    max_size=18,
)


@on_a_database(25)
@given(ops=operations)
def test_capacity_is_never_exceeded_and_the_books_stay_exact(db, ops):
    lab, clock = fresh_lab(db)
    lab = with_policy(lab, capacity=((PLAN, METRO, CAPACITY),))
    ids: list[int] = []
    for kind, which, hours, wait in ops:
        clock.advance(minutes=wait)
        now = clock.now
        lease_id = ids[which % len(ids)] if ids else None
        if kind == "request":
            ask = request_input(count=which % 4 + 1, duration=timedelta(hours=hours))
            outcome = request(lab, OWNER, ask, now)
            if outcome.ok:
                ids.append(outcome.lease_id)
        elif kind == "book":
            ids.append(book_if_it_fits(lab, clock, which, hours))
        elif kind == "approve" and lease_id is not None:
            approve(lab, REVIEWER, lease_id, now)
        elif kind == "extend" and lease_id is not None:
            extend(lab, OWNER, lease_id, timedelta(hours=hours), now)
        elif kind == "release" and lease_id is not None:
            release(lab, OWNER, lease_id, now)
        elif kind == "cancel" and lease_id is not None:
            cancel(lab, OWNER, lease_id, now)
        elif kind == "sweep":
            sweep(lab, now)
        assert_within_capacity(lab, now)
        assert_books_exact(lab, now)


def book_if_it_fits(lab, clock, which: int, hours: int) -> int:
    """A booking ahead through the calendar's own check, as an approval of one does."""

    start = clock.now + timedelta(hours=6 * which + 1)
    lease_id = booked(lab, clock, start, count=which % 4 + 1, hours=hours)
    with lab.db.write() as session:
        row = session.get(Lease, lease_id)
        if misfit(session, lab.policy, row, clock.now, leaving=lease_id):
            row.state = State.DENIED  # the approval is refused: it never held anything
            session.add(row)
            session.exec(CapacityDay.__table__.delete().where(CapacityDay.lease_id == lease_id))
    return lease_id


def live(lab) -> list[Lease]:
    with lab.db.read() as session:
        return [x for x in session.exec(select(Lease)).all() if State(x.state) in LIVE]


def assert_within_capacity(lab, now) -> None:
    change: dict = defaultdict(int)
    for lease in live(lab):
        start, end = window(lease, lab.policy, now)
        change[max(start, now)] += lease.count
        change[end] -= lease.count
    running = 0
    for moment in sorted(change):
        running += change[moment]
        assert running <= CAPACITY, (moment, running)


def assert_books_exact(lab, now) -> None:
    horizon = now + timedelta(days=40)
    expected = {
        x.id for x in live(lab) if (w := window(x, lab.policy, now))[0] < horizon and w[1] > now
    }
    with lab.db.read() as session:
        found = {h.lease_id for h in held(session, lab.policy, PLAN, METRO, now, horizon, now)}
        rows = {row.lease_id for row in session.exec(select(CapacityDay)).all()}
    assert found == expected
    assert rows <= {x.id for x in live(lab)}
