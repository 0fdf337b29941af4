"""Booking ahead (issue 22): a start in the requester's zone, approved ahead with its credit held,
the day-before DM, servers prepared the lead time before the start, ready at the start, ended at
start + duration; cancellation, the hoarding cap, the back-to-back flag, late servers told at
once, and every kind of bad start refused with nothing written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time
from sqlmodel import select

from commands.billing import cost_by_month
from commands.grammar import parse
from commands.lab import Code
from commands.notices import Kind
from commands.request import cancel, request
from commands.review import approve
from commands.states import State
from commands.sweep import sweep
from storage.models import CreditHold, CreditMonth
from tests.commands.helpers import audits, file, lease, live_devices, notices, servers, snapshot
from tests.conftest import OTHER, OWNER, REVIEWER, request_input, with_policy

WEEK_AHEAD = datetime(2026, 11, 9, 9, 0, tzinfo=UTC)  # the conftest clock starts 2026-11-02 09:00
LEAD = timedelta(minutes=15)
LENGTH = timedelta(hours=48)


def _texts(lab, kind: Kind) -> list[str]:
    return lab.notifier.texts(kind)


def _held(db, lease_id: int) -> dict[str, int]:
    with db.read() as session:
        rows = session.exec(select(CreditHold).where(CreditHold.lease_id == lease_id)).all()
    return {row.month: row.cents for row in rows}


def _month_held(db) -> int:
    with db.read() as session:
        rows = session.exec(
            select(CreditMonth).where(CreditMonth.project == "", CreditMonth.donor != "")
        ).all()
    return sum(row.held for row in rows)


def test_a_booking_through_its_life(lab, clock):
    """Approved a week ahead, told the day before, provisioned at start minus the lead time,
    ready by the start, ended at start + duration."""
    lease_id = file(lab, clock, start="2026-11-09T09:00")
    assert lease(lab.db, lease_id).book_start == WEEK_AHEAD
    assert "It starts <!date^" in _texts(lab, Kind.REQUEST_RECEIVED)[0]
    with freeze_time(clock.now):
        outcome = approve(lab, REVIEWER, lease_id, clock.now)
    assert outcome.ok and "Booking" in outcome.message
    booked = lease(lab.db, lease_id)
    assert booked.state == State.APPROVED
    assert booked.due_at == WEEK_AHEAD - timedelta(days=1)  # the day-before DM is next
    assert servers(lab.db, lease_id) == []
    # The credit is held for the window, lead time included, exactly as a lease starting then.
    window = cost_by_month(WEEK_AHEAD - LEAD, WEEK_AHEAD + LENGTH + lab.policy.grace, 3, 40)
    assert _held(lab.db, lease_id) == window
    decision = _texts(lab, Kind.DECISION)[0]
    assert "will be prepared from <!date^" in decision

    clock.advance(hours=1)
    with freeze_time(clock.now):
        sweep(lab, clock.now)
    assert lease(lab.db, lease_id).state == State.APPROVED and not live_devices(lab, lease_id)

    clock.now = WEEK_AHEAD - timedelta(days=1)
    with freeze_time(clock.now):
        sweep(lab, clock.now)
        sweep(lab, clock.now)  # a second pass tells nobody twice
    told = _texts(lab, Kind.DAY_BEFORE)
    assert len(told) == 1 and "starts tomorrow" in told[0]
    assert f"<!date^{int(WEEK_AHEAD.timestamp())}^" in told[0]
    assert f"<!date^{int((WEEK_AHEAD - LEAD).timestamp())}^" in told[0]
    assert lease(lab.db, lease_id).due_at == WEEK_AHEAD - LEAD

    clock.now = WEEK_AHEAD - LEAD - timedelta(seconds=1)
    with freeze_time(clock.now):
        sweep(lab, clock.now)
    assert lease(lab.db, lease_id).state == State.APPROVED

    clock.now = WEEK_AHEAD - LEAD
    with freeze_time(clock.now):
        sweep(lab, clock.now)
    assert lease(lab.db, lease_id).state == State.PROVISIONING
    assert len(live_devices(lab, lease_id)) == 3
    assert "prepared for its start" in _texts(lab, Kind.PROVISIONING)[0]

    clock.now = WEEK_AHEAD - LEAD + timedelta(seconds=150)  # the simulated servers take 120 s
    with freeze_time(clock.now):
        sweep(lab, clock.now)
    ready = lease(lab.db, lease_id)
    assert ready.state == State.ACTIVE and ready.starts_at < WEEK_AHEAD  # ready at the start
    assert ready.ends_at == WEEK_AHEAD + LENGTH  # whatever time the servers came up
    assert "ahead of its start" in _texts(lab, Kind.READY)[0]

    clock.now = WEEK_AHEAD + LENGTH - timedelta(hours=1)
    with freeze_time(clock.now):
        sweep(lab, clock.now)
    assert any("ends in" in text for text in _texts(lab, Kind.REMINDER))  # the usual reminders

    clock.now = WEEK_AHEAD + LENGTH + lab.policy.grace
    with freeze_time(clock.now):
        sweep(lab, clock.now)
    assert lease(lab.db, lease_id).state in (State.EXPIRING, State.RECLAIMED)


@pytest.mark.parametrize(
    ("zone", "now", "typed", "start"),
    [
        # Amsterdam, winter time (UTC+1): tomorrow's 09:00 is 08:00 UTC.
        (
            "Europe/Amsterdam",
            datetime(2026, 11, 2, 9, 0, tzinfo=UTC),
            "tomorrow 09:00",
            datetime(2026, 11, 3, 8, 0, tzinfo=UTC),
        ),
        # Tokyo (UTC+9, no daylight saving): it is Monday 18:00 there, so "mon 14:00" is next week.
        (
            "Asia/Tokyo",
            datetime(2026, 11, 2, 9, 0, tzinfo=UTC),
            "mon 14:00",
            datetime(2026, 11, 9, 5, 0, tzinfo=UTC),
        ),
        # New York across its change: booked on daylight time (UTC-4) for a Monday on standard
        # time (UTC-5), so 09:00 there is 14:00 UTC, not 13:00.
        (
            "America/New_York",
            datetime(2026, 10, 28, 12, 0, tzinfo=UTC),
            "mon 09:00",
            datetime(2026, 11, 2, 14, 0, tzinfo=UTC),
        ),
    ],
)
def test_a_start_is_read_in_the_requesters_own_zone(lab, clock, zone, now, typed, start):
    clock.now = now
    lease_id = file(lab, clock, start=typed, zone=zone)
    assert lease(lab.db, lease_id).book_start == start


def test_an_end_gives_the_length(lab, clock):
    lease_id = file(lab, clock, start="2026-11-09T09:00", end="2026-11-10 21:00")
    assert lease(lab.db, lease_id).duration_s == 36 * 3600


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"start": "2026-11-01T09:00"}, "in the past"),
        ({"start": "2027-03-01T09:00"}, "ahead"),
        ({"start": "next week sometime"}, "2026-12-14T09:00, tomorrow 09:00 or mon 14:00"),
        ({"start": "2026-11-09T25:00"}, "not a time labbot can read"),
        # Amsterdam skips 02:00-03:00 on 2027-03-28 (the horizon is stretched to reach it).
        ({"start": "2027-03-28T02:30", "zone": "Europe/Amsterdam"}, "does not exist"),
        ({"start": "2026-11-09T09:00", "end": "2026-11-09T08:00"}, "not after the start"),
        ({"end": "2026-11-09T08:00"}, "needs a start"),
    ],
)
def test_a_bad_start_is_one_sentence_and_writes_nothing(lab, clock, changes, says):
    lab = with_policy(lab, book_ahead=timedelta(days=200)) if "zone" in changes else lab
    before = snapshot(lab.db)
    outcome = request(lab, OWNER, request_input(**changes), clock.now)
    assert not outcome.ok and outcome.code == Code.BAD_START
    assert says in outcome.message
    assert outcome.message.count(".") <= 3 and "Traceback" not in outcome.message
    assert snapshot(lab.db) == before
    assert audits(lab.db, action="request")[-1].outcome == "refused"


def test_cancelling_a_booking_before_its_start_releases_its_hold(lab, clock):
    lease_id = file(lab, clock, start="2026-11-09T09:00")
    approve(lab, REVIEWER, lease_id, clock.now)
    assert _month_held(lab.db) > 0
    outcome = cancel(lab, OWNER, lease_id, clock.now)
    assert outcome.ok, outcome.message
    assert lease(lab.db, lease_id).state == State.CANCELLED
    assert _held(lab.db, lease_id) == {} and _month_held(lab.db) == 0
    assert servers(lab.db, lease_id) == [] and not live_devices(lab)
    clock.now = WEEK_AHEAD
    sweep(lab, clock.now)
    assert servers(lab.db, lease_id) == []  # the sweep prepares nothing for it


def test_a_started_lease_is_released_not_cancelled(lab, clock):
    lease_id = file(lab, clock)
    approve(lab, REVIEWER, lease_id, clock.now)
    outcome = cancel(lab, OWNER, lease_id, clock.now)
    assert not outcome.ok and outcome.code == Code.WRONG_STATE


def test_a_booking_that_cannot_be_created_in_time_is_told_at_once(lab, clock):
    lease_id = file(lab, clock, start="2026-11-09T09:00")
    approve(lab, REVIEWER, lease_id, clock.now)
    lab.provider.fail_next_creates(1)
    clock.now = WEEK_AHEAD - LEAD
    sweep(lab, clock.now)
    late = _texts(lab, Kind.BOOKING_LATE)
    assert len(late) == 1 and "may not be ready at its start" in late[0]
    assert any(f"Booking #{lease_id}" in t for t in _texts(lab, Kind.ADMIN_ALERT))
    assert clock.now < WEEK_AHEAD  # told before the start, not at it
    clock.advance(minutes=2)
    sweep(lab, clock.now)
    assert len(_texts(lab, Kind.BOOKING_LATE)) == 1  # once


def test_a_project_holds_at_most_its_bookings_ahead(lab, clock):
    lab = with_policy(lab, pending_per_user=10)
    for day in (10, 11, 12):
        file(lab, clock, start=f"2026-11-{day}T09:00")
    file(lab, clock)  # a request for now is not a booking ahead
    before = snapshot(lab.db)
    outcome = request(lab, OWNER, request_input(start="2026-11-13T09:00"), clock.now)
    assert not outcome.ok and outcome.code == Code.TOO_MANY
    assert snapshot(lab.db) == before
    other = request(lab, OTHER, request_input(project="etcd", start="2026-11-13T09:00"), clock.now)
    assert other.ok, other.message  # the cap is the project's


def test_a_booking_back_to_back_with_the_projects_lease_is_flagged(lab, clock):
    earlier = file(lab, clock, start="2026-11-09T09:00")  # ends 2026-11-11 09:00
    after = file(lab, clock, start="2026-11-11T09:30")
    elsewhere = file(lab, clock, start="2026-11-20T09:00")
    cards = {n.lease_id: n.payload for n in notices(lab.db) if n.kind == Kind.REVIEW_CARD}
    assert f"back to back with #{earlier}" in cards[after]
    assert "back to back" not in cards[elsewhere]
    assert "back to back" not in cards[earlier]


def test_a_booking_undecided_until_its_start_lapses(lab, clock):
    lease_id = file(lab, clock, start="tomorrow 09:00")
    clock.now = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)
    outcome = approve(lab, REVIEWER, lease_id, clock.now)
    assert not outcome.ok and outcome.code == Code.WRONG_STATE
    sweep(lab, clock.now)
    assert lease(lab.db, lease_id).state == State.EXPIRED_REQUEST


def test_a_start_typed_without_quotes_is_read_whole():
    command = parse(
        "request 3 c1.small.x86 ams1 48h project=coredns repo=https://github.com/coredns/coredns "
        "from=tomorrow 09:00 a release benchmark"
    )
    assert command.request.start == "tomorrow 09:00"
    assert command.request.purpose == "a release benchmark"
    ended = parse(
        "request 3 c1.small.x86 ams1 project=coredns repo=https://github.com/coredns/coredns "
        'from=2026-11-09T09:00 until="2026-11-10 09:00" why'
    )
    assert (ended.request.start, ended.request.end) == ("2026-11-09T09:00", "2026-11-10 09:00")


def test_a_booking_approved_within_its_last_day_gets_no_day_before_dm(lab, clock):
    lease_id = file(lab, clock, start="tomorrow 08:00")  # 23 hours ahead
    approve(lab, REVIEWER, lease_id, clock.now)
    start = datetime(2026, 11, 3, 8, 0, tzinfo=UTC)
    assert lease(lab.db, lease_id).due_at == start - LEAD
    clock.now = start - LEAD
    sweep(lab, clock.now)
    assert lease(lab.db, lease_id).state == State.PROVISIONING
    assert _texts(lab, Kind.DAY_BEFORE) == []
