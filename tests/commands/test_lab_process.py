"""The lab's process through the use cases on a real database: who is asking, the queue, the
reserve at approval, the repository check at the fake forge, the write-up reminder."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import pytest

from commands.credit_report import credit_report
from commands.extend import extend
from commands.lab import Code
from commands.notices import Kind
from commands.queue import queue, queue_text
from commands.repocheck import check_repository
from commands.request import request
from commands.reserve import RESERVE_OVERRIDE
from commands.review import approve
from commands.states import State
from commands.sweep import sweep
from commands.writeups import submit_writeup
from fakes.forge import FakeForge
from metal.forge_http import HttpForge
from tests.commands.helpers import active, audits, file, lease, ledger, snapshot, sweep_until_quiet
from tests.conftest import ADMIN, OTHER, OWNER, REVIEWER, request_input, with_policy

PROJECTS = (("coredns", "graduated"), ("keda", "incubating"))


@pytest.fixture
def process_lab(lab):
    # $1,000 a month, 20% kept: a 3 x c1.small.x86 x 48h request costs $58.80.
    return with_policy(
        lab,
        monthly_credit_cents=100_000,
        foundation_projects=PROJECTS,
        members=("Acme",),
        reserved_share=2000,
    )


@pytest.fixture
def forge(clock) -> Iterator[FakeForge]:
    with FakeForge(clock=clock) as fake:
        fake.add_repo("github", "coredns/coredns", license="Apache-2.0")
        yield fake


@pytest.fixture
def forge_lab(process_lab, forge, clock):
    client = HttpForge(github_url=forge.github_url, gitlab_url=forge.gitlab_url,
                       timeout=(1.0, 0.3), clock=clock)  # fmt: skip
    return replace(process_lab, forge=client)


def test_a_matched_foundation_project_is_filed_as_one(process_lab, clock):
    lease_id = file(process_lab, clock, applicant="foundation")
    filed = lease(process_lab.db, lease_id)
    assert (filed.applicant_class, filed.claimed_class, filed.class_note) == (
        "foundation", "foundation", ""
    )  # fmt: skip


def test_an_unmatched_claim_is_flagged_not_refused(process_lab, clock):
    outcome = request(
        process_lab, OWNER, request_input(project="leftpad", applicant="foundation"), clock.now
    )
    assert outcome.ok
    assert "Note: 'leftpad' is not one of the foundation's projects (coredns, keda)" in (
        outcome.message
    )
    filed = lease(process_lab.db, outcome.lease_id)
    assert (filed.applicant_class, filed.claimed_class) == ("other", "foundation")
    card = [n for n in process_lab.notifier.messages if n.kind == Kind.REVIEW_CARD][-1]
    assert card.data["class_note"] == filed.class_note
    assert "claimed foundation, not matched" in card.data["applicant"]
    assert audits(process_lab.db, outcome.lease_id, "request")[0].details.count("leftpad") == 1


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"applicant": "sponsor"}, "class 'sponsor' is not one of foundation, member, other"),
        ({"applicant": "member"}, "say which member organization is asking"),
        ({"repo_url": "https://bitbucket.org/a/b"}, "labbot checks repositories on github.com"),
        (
            {"applicant": "member", "org": "x" * 101},
            "the organization's name is 101 characters; the limit is 100",
        ),
    ],
)
def test_bad_claims_get_a_sentence_and_change_nothing(process_lab, clock, changes, said):
    before = snapshot(process_lab.db)
    outcome = request(process_lab, OWNER, request_input(**changes), clock.now)
    assert outcome.code == Code.BAD_INPUT and said in outcome.message
    assert snapshot(process_lab.db) == before
    assert audits(process_lab.db, action="request")[-1].outcome == "refused"


def test_the_queue_ranks_by_class_then_wait_and_shows_what_is_left(process_lab, clock):
    other = file(process_lab, clock, OWNER)
    clock.advance(minutes=5)
    member = file(process_lab, clock, OTHER, applicant="member", org="acme", project="acme-tool")
    clock.advance(minutes=5)
    foundation = file(process_lab, clock, ADMIN, applicant="foundation", project="keda")
    entries = queue(process_lab, clock.now)
    assert [e.lease.id for e in entries] == [foundation, member, other]
    assert [e.label for e in entries] == [
        "foundation project (incubating)",
        "member organization Acme",
        "other open-source project",
    ]
    assert [e.left["2026-11"] for e in entries] == [100_000 - 5880 * n for n in (1, 2, 3)]
    assert (
        queue_text(process_lab, REVIEWER, clock.now)
        .message.splitlines()[1]
        .startswith(f"1. [foundation project (incubating)] #{foundation} keda")
    )
    refused = queue_text(process_lab, OWNER, clock.now)
    assert refused.code == Code.NOT_ALLOWED


def test_the_card_shows_the_place_in_the_queue(process_lab, clock):
    file(process_lab, clock, OWNER)
    file(process_lab, clock, OTHER, applicant="foundation")
    cards = [m for m in process_lab.notifier.messages if m.kind == Kind.REVIEW_CARD]
    assert [c.data["place"] for c in cards] == ["1 of 1", "1 of 2"]


def test_the_reserve_refuses_a_favoured_approval_that_would_eat_into_it(process_lab, clock):
    """$1,000 granted, $200 kept: favoured requests may commit $800. 13 x c1.small.x86 x 6d1h
    is about $760 + the first $58.80 request = past $800."""
    first = file(process_lab, clock, OWNER, applicant="foundation")
    assert approve(process_lab, REVIEWER, first, clock.now).ok
    big = file(
        process_lab, clock, OTHER, applicant="foundation", count=13, duration=timedelta(days=6)
    )
    before = snapshot(process_lab.db)
    refused = approve(process_lab, REVIEWER, big, clock.now)
    assert refused.code == Code.RESERVE
    assert "2026-11 by $" in refused.message  # the month short, as the reviewer is shown
    assert snapshot(process_lab.db) == before
    overridden = approve(process_lab, ADMIN, big, clock.now, override="KubeCon demo")
    assert overridden.ok, overridden.message
    rows = ledger(process_lab.db, RESERVE_OVERRIDE)
    assert [(r.actor, r.reason, r.lease_id) for r in rows] == [(ADMIN, "KubeCon demo", big)]
    report = credit_report(process_lab, clock.now)
    assert report.reserve.kept == 20_000 and report.reserve.used == rows[0].amount_cents
    assert report.reserve.kept == report.reserve.used + report.reserve.left
    assert "Kept for other open-source projects (20%): kept $200.00" in report.text()
    lab_line = report.lab
    assert lab_line.granted == lab_line.spent + lab_line.committed + lab_line.available


def test_other_projects_may_use_the_reserve(process_lab, clock):
    big = file(process_lab, clock, OWNER, count=14, duration=timedelta(days=6))
    assert approve(process_lab, REVIEWER, big, clock.now).ok
    report = credit_report(process_lab, clock.now)
    assert report.reserve.used == report.reserve.kept == 20_000 and report.reserve.left == 0


def test_the_check_fills_in_the_card(forge_lab, clock):
    lease_id = file(forge_lab, clock)
    assert lease(forge_lab.db, lease_id).repo_check_at == clock.now  # pending at filing
    assert check_repository(forge_lab, lease_id, clock.now) == (
        "repository: public, Apache-2.0 (OSI-approved)"
    )
    checked = lease(forge_lab.db, lease_id)
    assert (checked.repo_ok, checked.repo_check_at) == (True, None)
    update = [m for m in forge_lab.notifier.messages if m.kind == Kind.CARD_UPDATE]
    assert [m.data["repo_check"] for m in update] == ["public, Apache-2.0 (OSI-approved)"]
    assert check_repository(forge_lab, lease_id, clock.now) == "already checked"


def test_problems_are_recorded_as_such(forge_lab, forge, clock):
    forge.add_repo("github", "acme/closed", private=True, license=None)
    lease_id = file(forge_lab, clock, repo_url="https://github.com/acme/closed")
    check_repository(forge_lab, lease_id, clock.now)
    assert (lease(forge_lab.db, lease_id).repo_check, lease(forge_lab.db, lease_id).repo_ok) == (
        "private, no license", False
    )  # fmt: skip
    gone = file(forge_lab, clock, OTHER, repo_url="https://github.com/acme/gone")
    check_repository(forge_lab, gone, clock.now)
    assert lease(forge_lab.db, gone).repo_check == "not found"


def test_a_rate_limited_forge_leaves_the_check_pending_until_its_reset(forge_lab, forge, clock):
    lease_id = file(forge_lab, clock)
    reset = clock.now + timedelta(minutes=40)
    forge.rate_limit(reset=reset.replace(microsecond=0))
    check_repository(forge_lab, lease_id, clock.now)
    pending = lease(forge_lab.db, lease_id)
    assert pending.repo_ok is None and pending.repo_check_at == reset.replace(microsecond=0)
    assert "rate limiting" in pending.repo_check
    assert not [m for m in forge_lab.notifier.messages if m.kind == Kind.CARD_UPDATE]
    sweep(forge_lab, clock.advance(minutes=10))
    assert lease(forge_lab.db, lease_id).repo_ok is None  # not due yet: not asked
    assert forge.count("/repos/") == 1
    sweep(forge_lab, clock.advance(minutes=31))
    assert lease(forge_lab.db, lease_id).repo_ok is True


def test_a_slow_forge_never_delays_filing_and_the_sweep_fills_it_in(forge_lab, forge, clock):
    forge.slow(5.0, times=1)
    lease_id = file(forge_lab, clock)  # the forge is not asked while filing
    assert forge.count() == 0
    check_repository(forge_lab, lease_id, clock.now)
    pending = lease(forge_lab.db, lease_id)
    assert pending.repo_check == "github.com did not answer within 0.3 s"
    sweep(forge_lab, clock.advance(minutes=16))
    assert lease(forge_lab.db, lease_id).repo_check == "public, Apache-2.0 (OSI-approved)"


def _reclaimed(lab, clock, **changes) -> int:
    lease_id = file(lab, clock, **changes)
    assert approve(lab, REVIEWER, lease_id, clock.now).ok
    sweep_until_quiet(lab, clock, timedelta(hours=6), limit=10)
    assert lease(lab.db, lease_id).state == State.RECLAIMED
    return lease_id


def test_one_write_up_reminder_after_the_configured_time(process_lab, clock):
    lease_id = _reclaimed(process_lab, clock)
    due = lease(process_lab.db, lease_id).writeup_remind_at
    assert due is not None
    sweep(process_lab, due - timedelta(seconds=1))
    asks = lambda: [  # noqa: E731
        m for m in process_lab.notifier.messages if m.kind == Kind.WRITEUP_REQUEST
    ]
    assert len(asks()) == 1
    sweep(process_lab, due)
    sweep(process_lab, due + timedelta(days=30))
    assert len(asks()) == 2 and asks()[-1].text.startswith("A reminder: the lab would still like")
    assert len(audits(process_lab.db, lease_id, "writeup_reminder")) == 1


def test_no_reminder_once_the_write_up_came_and_the_next_card_shows_it(process_lab, clock):
    first = _reclaimed(process_lab, clock)
    second = _reclaimed(process_lab, clock)
    url = "https://coredns.io/blog/lab"
    assert submit_writeup(process_lab, OWNER, first, url, clock.now).ok
    sweep(process_lab, clock.advance(days=15))
    reminded = [m.lease_id for m in process_lab.notifier.messages if m.data.get("reminder")]
    assert reminded == [second]
    file(process_lab, clock)
    card = [m for m in process_lab.notifier.messages if m.kind == Kind.REVIEW_CARD][-1]
    assert card.data["writeups"] == [f"#{second}: pending", f"#{first}: {url}"]


def test_an_extension_of_a_favoured_lease_may_not_eat_into_the_reserve(process_lab, clock):
    """13 x c1.small.x86 for 48h is $254.80; 5 more days make $878.80, past the $800 a
    foundation project may commit of $1,000 with 20% kept, though within the month."""
    lease_id = active(process_lab, clock, applicant="foundation", count=13)
    before = lease(process_lab.db, lease_id)
    refused = extend(process_lab, OWNER, lease_id, timedelta(days=5), clock.now)
    assert refused.code == Code.RESERVE
    assert "2026-11 by $" in refused.message  # the month short, as the owner is shown
    assert lease(process_lab.db, lease_id).ends_at == before.ends_at
    assert extend(process_lab, OWNER, lease_id, timedelta(days=1), clock.now).ok
