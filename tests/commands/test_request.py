"""Filing a request: what the requester is told, what the reviewers get, and every bad input
answered with one sentence that names the problem and what would be accepted."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from commands.durations import LONGEST, DurationError, format_duration, parse_duration
from commands.lab import Code, Lab
from commands.notices import Kind
from commands.request import cancel, request
from commands.states import State
from metal.provider import Catalog, Plan
from tests.commands.helpers import audits, file, lease, notices, snapshot
from tests.conftest import ADMIN, OWNER, request_input, with_policy


def test_a_request_is_a_pending_lease_and_reviewers_are_asked(lab, clock):
    outcome = request(lab, OWNER, request_input(), clock.now)
    assert outcome.ok
    assert outcome.message == (
        f"Request #{outcome.lease_id} filed: 3 x c1.small.x86 in ams1 for 2d for coredns. "
        "Reviewers have been asked; you will get a DM with their decision."
    )
    row = lease(lab.db, outcome.lease_id)
    assert row.state == State.PENDING
    assert row.os == lab.plans().default_os() == "ubuntu_16_04"
    assert row.hourly_cents == 40
    assert row.decide_by == row.due_at == clock.now + lab.policy.decide_within
    assert row.starts_at is None and row.ends_at is None
    # 3 servers x 40 cents x (48h + 1h grace) = $58.80
    assert lab.notifier.texts(Kind.REQUEST_RECEIVED) == [
        f"Request #{row.id} received: 3 x c1.small.x86 in ams1 for 2d for coredns, about $58.80. "
        "Reviewers have been asked."
    ]
    [card] = [m for m in lab.notifier.messages if m.kind == Kind.REVIEW_CARD]
    assert card.audience == "review"
    assert card.data["estimate"] == "$58.80"
    assert card.data["left_after"] == {"2026-11": "$24,941.20"}
    assert card.data["capacity"] is True
    assert card.data["history"] == []
    assert [a.action for a in audits(lab.db, row.id)] == ["request"]


def test_the_review_card_shows_the_requesters_history(lab, clock):
    first = file(lab, clock)
    cancel(lab, OWNER, first, clock.now)
    file(lab, clock)
    card = [m for m in lab.notifier.messages if m.kind == Kind.REVIEW_CARD][-1]
    assert card.data["history"] == [f"#{first} coredns (cancelled)"]


BAD_INPUTS = [
    ({"plan": "c9.huge.x86"}, "plan", "unknown plan 'c9.huge.x86'; choose one of t1.small.x86"),
    ({"metro": "mars1"}, "metro", "unknown metro 'mars1'; choose one of ewr1"),
    ({"count": 0}, "count", "0 servers is outside policy; ask for 1 to 100"),
    ({"count": 101}, "count", "101 servers is outside policy; ask for 1 to 100"),
    (
        {"duration": timedelta(minutes=30)},
        "duration",
        "30m is outside policy; ask for 1h to 14d",
    ),
    ({"duration": timedelta(days=15)}, "duration", "15d is outside policy; ask for 1h to 14d"),
    ({"repo_url": ""}, "repo_url", "repository URL, for example repo=https://github.com/"),
    ({"repo_url": "github.com/coredns"}, "repo_url", "repository URL"),
    ({"project": ""}, "project", "project's name"),
    ({"purpose": ""}, "purpose", "what the servers are for"),
    ({"os": "windows_95"}, "os", "unknown OS 'windows_95'; choose one of ubuntu_16_04"),
    ({"ssh_key": "hunter2"}, "ssh_key", "not a public SSH key (it should start with"),
]


@pytest.mark.parametrize(("changes", "field", "phrase"), BAD_INPUTS)
def test_bad_input_gets_one_sentence_and_changes_nothing(lab, clock, changes, field, phrase):
    before = snapshot(lab.db)
    outcome = request(lab, OWNER, request_input(**changes), clock.now)
    assert outcome.code == Code.BAD_INPUT
    # The one sentence says what would be accepted.
    assert outcome.message.startswith("That request cannot be filed: ")
    assert outcome.message.endswith(".")
    assert phrase in outcome.message
    assert list(outcome.errors) == [field]
    assert snapshot(lab.db) == before
    [event] = audits(lab.db)
    assert (event.action, event.outcome, event.actor) == ("request", "refused", OWNER)
    assert lab.notifier.messages == []


def test_several_problems_are_named_together(lab, clock):
    outcome = request(lab, OWNER, request_input(plan="nope", count=500, repo_url=""), clock.now)
    assert outcome.code == Code.BAD_INPUT
    assert set(outcome.errors) == {"plan", "count", "repo_url"}
    assert outcome.message.count(";") >= 2


def test_a_plan_not_offered_in_a_metro_names_where_it_is(db, clock):
    from tests.conftest import make_lab

    lab = make_lab(db, clock)
    base = lab.plans()
    plans = dict(base.plans)
    plans["c1.large.arm"] = Plan("c1.large.arm", "Type 2A", 50, "aarch64", "", ("sjc1", "ewr1"))
    lab = Lab(lab.db, lab.provider, lab.notifier, lab.policy, lab.roles)
    lab.catalog = Catalog(plans, base.metros, base.oses)
    outcome = request(lab, OWNER, request_input(plan="c1.large.arm"), clock.now)
    assert outcome.code == Code.NOT_OFFERED
    assert "c1.large.arm is not offered in ams1; it is offered in sjc1, ewr1" in outcome.message


def test_limits_follow_the_policy(lab, clock):
    strict = with_policy(lab, max_servers=2, max_lease=timedelta(hours=24))
    outcome = request(strict, OWNER, request_input(), clock.now)
    assert outcome.code == Code.BAD_INPUT
    assert "3 servers is outside policy; ask for 1 to 2" in outcome.message
    assert "2d is outside policy; ask for 1h to 1d" in outcome.message


def test_too_many_pending_requests(lab, clock):
    lab = with_policy(lab, pending_per_user=2)
    file(lab, clock)
    file(lab, clock)
    before = snapshot(lab.db)
    outcome = request(lab, OWNER, request_input(), clock.now)
    assert outcome.code == Code.TOO_MANY
    assert snapshot(lab.db) == before
    assert audits(lab.db)[-1].outcome == "refused"
    # Another user is not held back by them.
    assert request(lab, ADMIN, request_input(), clock.now).ok


def test_cancel_tells_the_review_channel(lab, clock):
    lease_id = file(lab, clock)
    outcome = cancel(lab, OWNER, lease_id, clock.now)
    assert outcome.message == f"Request #{lease_id} cancelled."
    assert lab.notifier.texts(Kind.CARD_DECIDED) == [
        f"Request #{lease_id} was cancelled by its owner."
    ]
    decided = next(m for m in lab.notifier.messages if m.kind == Kind.CARD_DECIDED)
    card = next(m for m in lab.notifier.messages if m.kind == Kind.REVIEW_CARD)
    assert decided.update_ref == f"rec-{card.id}"
    assert all(n.delivered_at is not None for n in notices(lab.db))


# Durations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("90m", 5400),
        ("36h", 129600),
        ("3d", 259200),
        ("1d12h", 129600),
        ("1w", 604800),
    ],
)
def test_durations_parse(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "48", "h", "2 days", "-1h", "1.5h", "3x", "1h-"])
def test_malformed_durations_say_what_would_be_accepted(text):
    with pytest.raises(DurationError) as error:
        parse_duration(text)
    assert (
        str(error.value) == f"'{text}' is not a duration; write it like 30s, 90m, 36h, 3d or 1d12h"
    )


def test_a_zero_duration_is_refused():
    with pytest.raises(DurationError, match="'0h' is zero"):
        parse_duration("0h")


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=10**8))
def test_durations_round_trip(seconds):
    text = format_duration(timedelta(seconds=seconds))
    assert parse_duration(text) == timedelta(seconds=seconds)
    assert parse_duration(text.upper()) == timedelta(seconds=seconds)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 500), st.sampled_from("smhdw")), min_size=1, max_size=4))
def test_any_written_duration_formats_back_to_the_same_length(parts):
    text = "".join(f"{n}{unit}" for n, unit in parts)
    total = sum(n * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[u] for n, u in parts)
    if total == 0:
        with pytest.raises(DurationError):
            parse_duration(text)
        return
    parsed = parse_duration(text)
    assert parsed == min(timedelta(seconds=total), LONGEST)  # longer reads as LONGEST
    assert parse_duration(format_duration(parsed)) == parsed
