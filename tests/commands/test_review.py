"""Reviewers decide: approve starts provisioning, deny needs a reason, a second decision gets
"already approved by X", and approval never over-commits a month without an admin's override."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import select

from commands.credit import OVERRIDE, books
from commands.lab import Code
from commands.notices import Kind
from commands.review import approve, deny
from commands.states import ServerState, State
from storage.models import LedgerEntry
from tests.commands.helpers import audits, file, lease, ledger, live_devices, servers, snapshot
from tests.conftest import ADMIN, OWNER, REVIEWER, with_policy

BIG = {"plan": "m1.xlarge.x86", "count": 100, "duration": timedelta(days=14)}


def test_approval_tells_the_owner_and_updates_the_card(lab, clock):
    lease_id = file(lab, clock)
    outcome = approve(lab, REVIEWER, lease_id, clock.now)
    assert outcome.message == f"Lease #{lease_id} approved; provisioning has started."
    decision = lab.notifier.texts(Kind.DECISION)
    assert decision == [
        f"Your request #{lease_id} (3 x c1.small.x86 in ams1 for 2d) was approved by <@{REVIEWER}>."
    ]
    card = next(m for m in lab.notifier.messages if m.kind == Kind.REVIEW_CARD)
    decided = next(m for m in lab.notifier.messages if m.kind == Kind.CARD_DECIDED)
    assert decided.update_ref == f"rec-{card.id}"
    assert decided.data["by"] == REVIEWER
    assert lab.notifier.texts(Kind.PROVISIONING)
    assert len(live_devices(lab, lease_id)) == 3
    assert all(s.state == ServerState.PROVISIONING for s in servers(lab.db, lease_id))


def test_a_second_decision_is_told_who_decided_first(lab, clock):
    lease_id = file(lab, clock)
    approve(lab, REVIEWER, lease_id, clock.now)
    later = clock.advance(minutes=1)
    before = snapshot(lab.db)
    again = approve(lab, ADMIN, lease_id, later)
    assert again.code == Code.ALREADY_DECIDED
    assert again.message == (
        f"Lease #{lease_id} was already approved by <@{REVIEWER}> at "
        "<!date^1793610000^{date_short_pretty} {time}|Nov 2, 2026 09:00 UTC>."
    )
    assert snapshot(lab.db) == before
    denied_after = deny(lab, ADMIN, lease_id, "too late", later)
    assert denied_after.code == Code.ALREADY_DECIDED


def test_deny_records_the_reason_and_tells_the_owner(lab, clock):
    lease_id = file(lab, clock)
    assert deny(lab, REVIEWER, lease_id, "  mining is not open source  ", clock.now).ok
    row = lease(lab.db, lease_id)
    assert row.reason == "mining is not open source"
    assert lab.notifier.texts(Kind.DECISION)[0].endswith("Reason: mining is not open source")
    again = approve(lab, REVIEWER, lease_id, clock.now)
    assert again.code == Code.ALREADY_DECIDED
    assert live_devices(lab) == []


def test_approval_that_would_over_commit_the_month_is_refused(lab, clock):
    # 100 x $1.25 x (14d + 1h) = $42,125: more than the $25,000 month.
    lease_id = file(lab, clock, **BIG)
    before = snapshot(lab.db)
    outcome = approve(lab, REVIEWER, lease_id, clock.now)
    assert outcome.code == Code.OVER_BUDGET
    assert "2026-11 by $17,125.00" in outcome.message  # the shortfall the reviewer is shown
    assert snapshot(lab.db) == before
    assert lease(lab.db, lease_id).state == State.PENDING
    assert audits(lab.db, lease_id)[-1].outcome == "refused"


def test_an_admin_override_is_recorded_in_the_ledger(lab, clock):
    lease_id = file(lab, clock, **BIG)
    outcome = approve(lab, ADMIN, lease_id, clock.now, override="KubeCon demo, donor agreed")
    assert outcome.ok
    [entry] = ledger(lab.db, OVERRIDE)
    assert (entry.month, entry.amount_cents, entry.actor, entry.lease_id) == (
        "2026-11",
        1_712_500,
        ADMIN,
        lease_id,
    )
    assert entry.reason == "KubeCon demo, donor agreed"
    assert (
        '"override": "KubeCon demo, donor agreed"' in audits(lab.db, lease_id, "approve")[0].details
    )


def test_two_leases_that_fit_alone_do_not_fit_together(lab, clock):
    half = {"plan": "m1.xlarge.x86", "count": 60, "duration": timedelta(days=7)}
    # 60 x $1.25 x 169h = $12,675 each.
    first = file(lab, clock, **half)
    second = file(lab, clock, **half)
    assert approve(lab, REVIEWER, first, clock.now).ok
    refused = approve(lab, REVIEWER, second, clock.now)
    assert refused.code == Code.OVER_BUDGET and "2026-11 by $350.00" in refused.message


def test_a_lease_spanning_two_months_is_checked_in_both(lab, clock):
    clock.now = clock.now.replace(day=28)
    lease_id = file(lab, clock, **BIG)
    outcome = approve(lab, REVIEWER, lease_id, clock.now)
    assert outcome.code == Code.OVER_BUDGET
    assert "2026-11 by" not in outcome.message  # November alone fits (2d 15h of it)
    assert "2026-12 by" in outcome.message


def test_per_project_cap(lab, clock):
    lab = with_policy(lab, project_cap_cents=10_000)  # $100 a month per project
    first = file(lab, clock)  # $58.80
    assert approve(lab, REVIEWER, first, clock.now).ok
    second = file(lab, clock)
    outcome = approve(lab, REVIEWER, second, clock.now)
    assert outcome.code == Code.OVER_PROJECT_CAP
    assert "2026-11 by $17.60" in outcome.message  # the shortfall the reviewer is shown
    other = file(lab, clock, project="envoy", repo_url="https://github.com/envoyproxy/envoy")
    assert approve(lab, REVIEWER, other, clock.now).ok
    assert approve(lab, ADMIN, second, clock.now, override="release week").ok
    with lab.db.read() as session:
        rows = session.exec(select(LedgerEntry).where(LedgerEntry.kind == "override")).all()
    # Past the project's cap only: one row against coredns's cap, none against the lab's month.
    assert [(r.project, r.month, r.amount_cents, r.actor, r.reason) for r in rows] == [
        ("coredns", "2026-11", 1_760, ADMIN, "release week")
    ]
    with lab.db.write() as session:
        project = books(session, ["2026-11"], lab.policy, clock.now, project="coredns")
        assert project["2026-11"].spent + project["2026-11"].committed == 11_760
        assert project["2026-11"].allowance == 11_760
        assert books(session, ["2026-11"], lab.policy, clock.now)["2026-11"].overrides == 0


def test_request_then_approve_leaves_the_owner_count_of_pending_requests(lab, clock):
    lab = with_policy(lab, pending_per_user=1)
    lease_id = file(lab, clock)
    approve(lab, REVIEWER, lease_id, clock.now)
    assert file(lab, clock, actor=OWNER, **{"count": 1})
