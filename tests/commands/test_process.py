"""The lab's process as pure decisions: who is asking, the review order, the reserve.

Hypothesis drives the ranking and the reserve directly: the queue is one total order whatever
order the requests arrive in; the reserve is never committed to a foundation or member request
without an override row; and the books still balance to the cent.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from commands.process import (
    CLASSES,
    FAVOURED,
    FOUNDATION,
    MEMBER,
    OTHER,
    Waiting,
    class_problem,
    classify,
    format_share,
    kept_cents,
    left_after,
    parse_share,
    rank,
    reserve,
    reserve_shortfall,
)

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
PROJECTS = {"coredns": "graduated", "keda": "incubating"}
MEMBERS = ("Acme", "Initech")

waiting = st.builds(
    Waiting,
    lease_id=st.integers(1, 10_000),
    applicant_class=st.sampled_from(CLASSES),
    filed_at=st.integers(0, 10_000).map(lambda m: T0 + timedelta(minutes=m)),
    cost=st.dictionaries(st.sampled_from(["2026-11", "2026-12"]), st.integers(0, 10**6)),
)
queues = st.lists(waiting, max_size=30, unique_by=lambda w: w.lease_id)


@given(queues, st.permutations(CLASSES), st.randoms())
def test_the_queue_is_one_order_whatever_order_requests_arrive_in(items, order, rnd):
    ranked = rank(items, tuple(order))
    shuffled = list(items)
    rnd.shuffle(shuffled)
    assert rank(shuffled, tuple(order)) == ranked
    keys = [(order.index(w.applicant_class), w.filed_at, w.lease_id) for w in ranked]
    assert keys == sorted(keys)


@given(queues, st.dictionaries(st.sampled_from(["2026-11", "2026-12"]), st.integers(0, 10**7)))
def test_what_is_left_runs_down_the_queue_to_the_cent(items, available):
    ranked = rank(items)
    lefts = left_after(ranked, available)
    months = {m for w in items for m in w.cost}
    for month in months:
        last = [left[month] for left in lefts if month in left][-1]
        assert last == available.get(month, 0) - sum(w.cost.get(month, 0) for w in items)


def test_foundation_then_members_then_others_then_longest_wait():
    items = [
        Waiting(1, OTHER, T0, {}),
        Waiting(2, MEMBER, T0 + timedelta(hours=2), {}),
        Waiting(3, FOUNDATION, T0 + timedelta(hours=3), {}),
        Waiting(4, MEMBER, T0 + timedelta(hours=1), {}),
    ]
    assert [w.lease_id for w in rank(items)] == [3, 4, 2, 1]
    assert [w.lease_id for w in rank(items, (OTHER, MEMBER, FOUNDATION))] == [1, 4, 2, 3]


# --- the reserve: a month as a sequence of approvals -------------------------------------------

approvals = st.lists(
    st.tuples(st.sampled_from(CLASSES), st.integers(0, 2_000_000), st.booleans()), max_size=40
)


@given(st.integers(0, 5_000_000), st.integers(0, 10_000), approvals)
def test_the_reserve_is_never_committed_to_favoured_requests_without_an_override(
    granted, share, requests
):
    """Each approval is checked against the month's credit and the reserve, as the use case
    does; an admin's override writes the shortfall as a row. After any sequence: favoured use
    never passes grant - kept + override rows; granted = spent + available; kept = used + left."""
    favoured = others = 0
    override_rows: list[int] = []
    for applicant, need, admin_overrides in requests:
        if favoured + others + need > granted:
            continue  # the lab-wide check refuses it first (tested in test_credit_properties)
        short = reserve_shortfall(applicant, need, granted, share, favoured, sum(override_rows))
        if short and not admin_overrides:
            continue
        if short:
            override_rows.append(short)
        if applicant in FAVOURED:
            favoured += need
        else:
            others += need
        assert favoured <= granted - kept_cents(granted, share) + sum(override_rows)
    state = reserve(granted, share, others, sum(override_rows))
    assert state.kept == state.used + state.left and 0 <= state.left <= state.kept
    assert granted == favoured + others + (granted - favoured - others)
    assert all(row > 0 for row in override_rows)


@given(st.integers(0, 5_000_000), st.integers(0, 10_000), st.integers(0, 10**7))
def test_other_projects_are_never_held_back_by_their_own_reserve(granted, share, used):
    assert reserve_shortfall(OTHER, 1_000, granted, share, used, 0) == 0


def test_a_refusal_names_exactly_what_the_reserve_lacks():
    # $100 granted, 20% kept: favoured requests may use $80; $70 used, $15 asked: $5 short.
    assert reserve_shortfall(FOUNDATION, 1_500, 10_000, 2_000, 7_000, 0) == 500
    assert reserve_shortfall(MEMBER, 1_000, 10_000, 2_000, 7_000, 0) == 0
    assert reserve_shortfall(MEMBER, 1_500, 10_000, 2_000, 7_000, 500) == 0


@pytest.mark.parametrize(
    ("text", "points"), [("20%", 2000), ("0", 0), ("100%", 10_000), ("12.5%", 1250), (" 7 % ", 700)]
)
def test_shares_are_read_as_people_write_them(text, points):
    assert parse_share(text) == points


@pytest.mark.parametrize("text", ["101%", "-5%", "abc", "", "20.123%", "1e2"])
def test_a_share_outside_0_to_100_percent_says_what_is_accepted(text):
    with pytest.raises(ValueError, match="from 0% to 100%; write it like 20%"):
        parse_share(text)


def test_shares_print_as_they_were_written():
    assert (format_share(2000), format_share(1250)) == ("20%", "12.50%")


# --- who is asking ------------------------------------------------------------------------------


def test_a_foundation_project_is_matched_with_its_maturity():
    found = classify(FOUNDATION, "CoreDNS", "", PROJECTS, MEMBERS)
    assert (found.effective, found.maturity, found.note) == (FOUNDATION, "graduated", "")
    assert found.label() == "foundation project (graduated)"


def test_an_unmatched_claim_is_flagged_and_waits_with_the_others():
    found = classify(FOUNDATION, "leftpad", "", PROJECTS, MEMBERS)
    assert (found.claimed, found.effective) == (FOUNDATION, OTHER)
    assert found.note == "'leftpad' is not one of the foundation's projects (coredns, keda)"
    member = classify(MEMBER, "x", "Globex", PROJECTS, MEMBERS)
    assert member.effective == OTHER
    assert member.note == "'Globex' is not a member organization (Acme, Initech)"


def test_a_member_is_matched_ignoring_case():
    found = classify(MEMBER, "tool", "acme", PROJECTS, MEMBERS)
    assert (found.effective, found.org, found.label()) == (
        MEMBER,
        "Acme",
        "member organization Acme",
    )


def test_a_malformed_claim_says_what_is_accepted():
    assert class_problem("sponsor", "") == (
        "class 'sponsor' is not one of foundation, member, other; for example class=other"
    )
    assert "org=Acme" in class_problem(MEMBER, "")
    assert class_problem(OTHER, "") is None
