"""The capacity calendar: a request, an approval or an extension that would hold more servers of
a plan in a metro than the operator allows, at any moment of its window, is refused with the
first moment it would not fit and the next window of the same length that does; ended leases
hold nothing; a donor's own limit counts only its leases; the calendar reads at a glance."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import pytest

from commands.capacity import calendar, calendar_lines, calendar_text, place, window
from commands.donors import Donor
from commands.extend import extend
from commands.facts import when
from commands.grammar import GrammarError, parse
from commands.lab import Code
from commands.reclaim import release
from commands.request import request
from commands.review import approve
from commands.states import State
from storage.models import Lease
from tests.commands.helpers import active, approved, audits, file, lease
from tests.conftest import OTHER, OWNER, REVIEWER, request_input, with_policy

PLAN, METRO = "c1.small.x86", "ams1"


def limited(lab, servers: int = 4, **changes):
    return with_policy(lab, capacity=((PLAN, METRO, servers),), pending_per_user=10, **changes)


def booked(lab, clock, start, count: int, hours: int = 24) -> int:
    """A booking approved ahead (what book-ahead's `from=` approves): approved and put on the
    calendar, its servers not provisioned yet."""
    row = Lease(
        state=State.APPROVED,
        owner=OTHER,
        project="envoy",
        repo_url="https://github.com/envoyproxy/envoy",
        purpose="a release benchmark",
        plan=PLAN,
        metro=METRO,
        os="ubuntu_16_04",
        count=count,
        duration_s=hours * 3600,
        hourly_cents=40,
        created_at=clock.now,
        decided_at=clock.now,
        decided_by=REVIEWER,
        book_start=start,
    )
    with lab.db.write() as session:
        session.add(row)
        session.flush()
        place(session, [row], lab.policy, clock.now)
        return row.id


def test_a_request_past_capacity_names_the_first_moment_and_the_next_window(lab, clock):
    lab = limited(lab)
    first = active(lab, clock, count=3)
    ends = lease(lab.db, first).ends_at
    outcome = request(lab, OWNER, request_input(count=2, duration=timedelta(hours=24)), clock.now)
    assert not outcome.ok
    assert outcome.code == Code.NO_CAPACITY
    assert when(clock.now) in outcome.message
    assert f"the next 1d that fits starts {when(ends)}" in outcome.message
    assert "3 of the lab's 4 c1.small.x86 in ams1 are held then" in outcome.message


def test_a_request_that_fits_is_filed_and_its_card_says_what_the_calendar_holds(lab, clock):
    lab = limited(lab)
    active(lab, clock, count=2)
    lease_id = file(lab, clock, count=2)
    assert lease(lab.db, lease_id).state == State.PENDING
    card = lab.notifier.messages[-1]
    assert card.data["calendar"] == (
        "ams1: 2 of the lab's 4 held at the busiest moment of its window"
    )


def test_approval_checks_again_and_writes_nothing_when_it_does_not_fit(lab, clock):
    lab = limited(lab)
    one = file(lab, clock, count=3)
    two = file(lab, clock, count=3)  # each fits alone: a request holds nothing
    assert approve(lab, REVIEWER, one, clock.now).ok
    outcome = approve(lab, REVIEWER, two, clock.now)
    assert outcome.code == Code.NO_CAPACITY
    assert lease(lab.db, two).state == State.PENDING


def test_a_booking_ahead_is_counted_and_the_next_window_skips_past_it(lab, clock):
    lab = limited(lab)
    start = clock.now + timedelta(days=3)
    booked(lab, clock, start, count=4, hours=24)
    # 72h from now reaches into the booking.
    outcome = request(lab, OWNER, request_input(count=1, duration=timedelta(hours=72)), clock.now)
    assert outcome.code == Code.NO_CAPACITY
    prepared = lab.policy.prepare_from(start)  # its servers are made the lead time before
    assert f"do not fit from {when(prepared)}" in outcome.message
    assert f"the next 3d that fits starts {when(start + timedelta(hours=24))}" in outcome.message
    # A shorter lease, which ends before the booking starts, fits.
    assert request(lab, OWNER, request_input(count=4, duration=timedelta(hours=24)), clock.now).ok


def test_an_extension_into_a_booking_is_refused_and_the_lease_keeps_its_end(lab, clock):
    lab = limited(lab)
    lease_id = active(lab, clock, count=2, duration=timedelta(hours=24))
    ends = lease(lab.db, lease_id).ends_at
    booked(lab, clock, ends + timedelta(hours=6), count=3)
    assert extend(lab, OWNER, lease_id, timedelta(hours=4), clock.now).ok
    outcome = extend(lab, OWNER, lease_id, timedelta(hours=4), clock.now)
    assert outcome.code == Code.NO_CAPACITY
    prepared = lab.policy.prepare_from(ends + timedelta(hours=6))
    assert f"do not fit from {when(prepared)}" in outcome.message
    assert lease(lab.db, lease_id).ends_at == ends + timedelta(hours=4)


def test_a_released_lease_holds_nothing(lab, clock):
    lab = limited(lab)
    first = active(lab, clock, count=4)
    assert request(lab, OWNER, request_input(count=1), clock.now).code == Code.NO_CAPACITY
    assert release(lab, OWNER, first, clock.now).ok
    assert request(lab, OWNER, request_input(count=4), clock.now).ok


def test_a_donors_own_limit_counts_only_the_leases_it_pays_for(lab, clock):
    lab = with_policy(
        lab,
        donor_list=(Donor("lab", capacity=((PLAN, METRO, 2),)),),
        pending_per_user=10,
    )
    active(lab, clock, count=2)
    outcome = request(lab, OWNER, request_input(count=1), clock.now)
    assert outcome.code == Code.NO_CAPACITY
    assert "2 of lab's 2 c1.small.x86" in outcome.message
    assert request(lab, OWNER, request_input(count=5, metro="ewr1"), clock.now).ok


def test_a_limit_below_the_request_says_to_ask_for_fewer(lab, clock):
    lab = limited(lab, servers=2)
    outcome = request(lab, OWNER, request_input(count=3), clock.now)
    assert outcome.code == Code.NO_CAPACITY
    assert "the lab's limit there is 2, so ask for fewer servers" in outcome.message


def test_a_lease_approved_to_start_now_holds_until_it_could_end_at_the_latest(lab, clock):
    lab = limited(lab)
    lease_id = approved(lab, clock, count=1, duration=timedelta(hours=10))
    row = lease(lab.db, lease_id)
    if row.starts_at is None:
        start, end = window(row, lab.policy, clock.now)
        assert (start, end) == (
            clock.now,
            clock.now + lab.policy.provision_timeout + timedelta(hours=10),
        )


def test_the_calendar_reads_per_day_held_against_capacity(lab, clock):
    lab = limited(lab)
    active(lab, clock, count=3, duration=timedelta(hours=24))
    booked(lab, clock, clock.now + timedelta(days=3), count=4, hours=24)
    with lab.db.read() as session:
        days = calendar(session, lab.policy, PLAN, METRO, clock.now)
    assert [d.held for d in days[:6]] == [3, 3, 0, 4, 4, 0]
    lines = calendar_lines(days)
    assert len(lines) == 14
    assert lines[0] == f"{days[0].day:%a %b %d}      3/4  ########.."
    assert lines[3].endswith("4/4  ##########")


def test_no_limit_is_no_refusal(lab, clock):
    lab = replace(lab, policy=replace(lab.policy, pending_per_user=10))
    active(lab, clock, count=50)
    assert request(lab, OWNER, request_input(count=50), clock.now).ok


def test_lab_calendar_answers_for_a_plan_and_a_metro_and_says_what_it_accepts(lab, clock):
    lab = limited(lab)
    active(lab, clock, count=3, duration=timedelta(hours=24))
    command = parse("calendar c1.small.x86 ams1")
    outcome = calendar_text(lab, command.plan, command.metro, clock.now)
    assert outcome.ok
    assert outcome.message.startswith(
        "*c1.small.x86 in ams1*, the coming 14 days (UTC): the most servers held or booked at "
        "any moment of each day (at most 4 at once)\n```"
    )
    assert "3/4  ########.." in outcome.message
    wrong = calendar_text(lab, "c9.huge", "ams1", clock.now)
    assert wrong.code == Code.BAD_INPUT
    assert wrong.message.startswith("There is no plan 'c9.huge'; choose one of t1.small.x86")
    with pytest.raises(GrammarError, match="takes a plan and a metro"):
        parse("calendar c1.small.x86")


def test_a_donor_whose_own_capacity_is_full_is_passed_over_for_one_with_room(lab, clock):
    donors = (Donor("cncf", capacity=((PLAN, METRO, 2),)), Donor("community"))
    lab = with_policy(lab, donor_list=donors, pending_per_user=10)
    lab = replace(lab, providers={donor.name: lab.provider for donor in donors})
    first = active(lab, clock, count=2)
    assert lease(lab.db, first).donor == "cncf"
    outcome = request(lab, OWNER, request_input(count=2), clock.now)
    assert outcome.ok
    assert lease(lab.db, outcome.lease_id).donor == "community"
    [filed] = audits(lab.db, outcome.lease_id, "request")
    stops = json.loads(filed.details)["donor_stops"]
    assert stops == [
        f"cncf's own capacity has no room for 2 {PLAN} in {METRO} from {when(clock.now)}"
    ]


def test_a_lease_across_metros_is_checked_in_each_and_held_in_each(lab, clock):
    lab = with_policy(lab, capacity=((PLAN, "ewr1", 3),), pending_per_user=10)
    across = (("ams1", 4), ("ewr1", 2))
    first = active(lab, clock, metro="ams1", count=6, metro_counts=across)
    outcome = request(lab, OWNER, request_input(metro="ewr1", count=2), clock.now)
    assert outcome.code == Code.NO_CAPACITY
    assert "2 of the lab's 3 c1.small.x86 in ewr1 are held then" in outcome.message
    assert request(lab, OWNER, request_input(metro="ewr1", count=1), clock.now).ok
    with lab.db.read() as session:
        [ewr1] = calendar(session, lab.policy, PLAN, "ewr1", clock.now)[:1]
        [ams1] = calendar(session, lab.policy, PLAN, "ams1", clock.now)[:1]
    assert (ewr1.held, ams1.held) == (2, 4)
    assert release(lab, OWNER, first, clock.now).ok
    assert request(lab, OWNER, request_input(metro="ewr1", count=3), clock.now).ok
