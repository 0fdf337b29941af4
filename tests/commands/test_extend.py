"""Extensions: inside policy at once, beyond policy through a reviewer, never over the month's
credit without an admin's recorded override, reminders owed again, the backstop moved."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import select

from commands.credit import OVERRIDE
from commands.extend import decide_extension, extend
from commands.facts import when
from commands.lab import Code
from commands.notices import Kind
from commands.states import State
from commands.sweep import sweep
from storage.models import PendingExtension, SimDevice
from tests.commands.helpers import active, audits, lease, ledger, servers, snapshot
from tests.conftest import ADMIN, OTHER, OWNER, REVIEWER, with_policy


def _pending(lab) -> list[PendingExtension]:
    with lab.db.read() as session:
        return list(session.exec(select(PendingExtension)).all())


def test_an_extension_inside_policy_takes_effect_at_once(lab, clock):
    lease_id = active(lab, clock)
    ends = lease(lab.db, lease_id).ends_at
    outcome = extend(lab, OWNER, lease_id, timedelta(hours=12), clock.now)
    assert outcome.ok
    assert outcome.message == (
        f"Lease #{lease_id} extended by 12h; it now ends {when(ends + timedelta(hours=12))}."
    )
    row = lease(lab.db, lease_id)
    assert row.ends_at == ends + timedelta(hours=12)
    assert row.extended_s == 12 * 3600
    assert lab.notifier.texts(Kind.EXTENDED) == [outcome.message]
    assert _pending(lab) == []
    # The provider will not delete the servers before the new end.
    with lab.db.read() as session:
        for server in servers(lab.db, lease_id):
            device = session.get(SimDevice, server.provider_id)
            assert device.termination_time >= row.ends_at + lab.policy.grace


def test_reminders_are_owed_again_after_an_extension(lab, clock):
    lease_id = active(lab, clock)
    ends = lease(lab.db, lease_id).ends_at
    sweep(lab, ends - timedelta(hours=1))
    assert len(lab.notifier.texts(Kind.REMINDER)) == 1
    extend(lab, OWNER, lease_id, timedelta(hours=48), ends - timedelta(hours=1))
    new_end = ends + timedelta(hours=48)
    sweep(lab, new_end - timedelta(hours=24))
    sweep(lab, new_end - timedelta(hours=1))
    assert len(lab.notifier.texts(Kind.REMINDER)) == 3
    sweep(lab, ends + lab.policy.grace)
    assert lease(lab.db, lease_id).state == State.ACTIVE
    sweep(lab, new_end + lab.policy.grace)
    assert lease(lab.db, lease_id).state == State.RECLAIMED


def test_an_extension_beyond_policy_waits_for_a_reviewer(lab, clock):
    lab = with_policy(lab, max_total=timedelta(days=3))
    lease_id = active(lab, clock)
    ends = lease(lab.db, lease_id).ends_at
    outcome = extend(lab, OWNER, lease_id, timedelta(days=2), clock.now)
    assert outcome.ok
    [ext] = _pending(lab)
    assert outcome.message == (
        f"Extending #{lease_id} by 2d needs a reviewer: the lease would last 4d in all, beyond "
        f"the 3d a lease may reach without a reviewer. Reviewers have been asked (extension "
        f"request {ext.id})."
    )
    assert lease(lab.db, lease_id).ends_at == ends
    [card] = [m for m in lab.notifier.messages if m.kind == Kind.EXTENSION_CARD]
    assert card.audience == "review" and card.data["extension_id"] == ext.id
    refused = decide_extension(lab, OWNER, ext.id, True, clock.now)
    assert refused.code == Code.NOT_ALLOWED
    decided = decide_extension(lab, REVIEWER, ext.id, True, clock.now)
    assert decided.message == f"Extension {ext.id} of lease #{lease_id} approved."
    assert lease(lab.db, lease_id).ends_at == ends + timedelta(days=2)
    again = decide_extension(lab, ADMIN, ext.id, False, clock.now)
    assert again.code == Code.ALREADY_DECIDED
    updated = [m for m in lab.notifier.messages if m.kind == Kind.CARD_DECIDED][-1]
    assert updated.update_ref == f"rec-{card.id}"


def test_a_denied_extension_tells_the_owner_and_changes_nothing(lab, clock):
    lab = with_policy(lab, max_total=timedelta(days=3))
    lease_id = active(lab, clock)
    ends = lease(lab.db, lease_id).ends_at
    extend(lab, OWNER, lease_id, timedelta(days=2), clock.now)
    [ext] = _pending(lab)
    assert decide_extension(lab, REVIEWER, ext.id, False, clock.now, reason="not this month").ok
    assert lease(lab.db, lease_id).ends_at == ends
    assert lab.notifier.texts(Kind.DECISION)[-1] == (
        f"Your extension of lease #{lease_id} by 2d was denied by <@{REVIEWER}>. "
        "Reason: not this month"
    )
    assert decide_extension(lab, REVIEWER, 99, True, clock.now).code == Code.NOT_FOUND


def test_an_extension_that_would_over_commit_is_refused(lab, clock):
    lab = with_policy(lab, monthly_credit_cents=8_000)  # $80; the lease holds $58.80
    lease_id = active(lab, clock)
    before = snapshot(lab.db)
    row_before = lease(lab.db, lease_id)
    outcome = extend(lab, OWNER, lease_id, timedelta(hours=24), clock.now)
    assert outcome.code == Code.OVER_BUDGET
    assert "2026-11 by $" in outcome.message  # the month short, as the owner is shown
    # Only the audit entry (and the harmless backstop move) may differ.
    after = snapshot(lab.db)
    assert _without_backstop(lease(lab.db, lease_id)) == _without_backstop(row_before)
    assert after["ledgerentry"] == before["ledgerentry"]
    assert after["notice"] == before["notice"]
    assert after["sentreminder"] == before["sentreminder"]
    assert audits(lab.db, lease_id)[-1].outcome == "refused"


def _without_backstop(row) -> dict:
    return row.model_dump(exclude={"backstop_at"})


def test_an_admin_can_grant_an_extension_over_the_credit_with_a_recorded_reason(lab, clock):
    lab = with_policy(lab, monthly_credit_cents=8_000, max_total=timedelta(days=2))
    lease_id = active(lab, clock)
    extend(lab, OWNER, lease_id, timedelta(hours=24), clock.now)
    [ext] = _pending(lab)
    refused = decide_extension(lab, REVIEWER, ext.id, True, clock.now)
    assert refused.code == Code.OVER_BUDGET
    granted = decide_extension(lab, ADMIN, ext.id, True, clock.now, override="release blocker")
    assert granted.ok
    [entry] = ledger(lab.db, OVERRIDE)
    assert (entry.actor, entry.reason, entry.lease_id) == (ADMIN, "release blocker", lease_id)
    assert entry.amount_cents == 3 * 40 * 73 - 8_000  # what the month lacked


def test_extension_input_errors(lab, clock):
    lease_id = active(lab, clock)
    for actor, extra, code in [
        (OWNER, timedelta(0), Code.BAD_INPUT),
        (OTHER, timedelta(hours=1), Code.NOT_ALLOWED),
    ]:
        before = snapshot(lab.db)
        outcome = extend(lab, actor, lease_id, extra, clock.now)
        assert outcome.code == code
        assert snapshot(lab.db) == before
    assert extend(lab, ADMIN, lease_id, timedelta(hours=1), clock.now).ok


def test_an_extension_past_the_project_cap_is_refused_and_changes_nothing(lab, clock):
    lab = with_policy(lab, project_cap_cents=8_000)  # $80 a month for coredns; it holds $58.80
    lease_id = active(lab, clock)
    before = snapshot(lab.db)
    row_before = lease(lab.db, lease_id)
    outcome = extend(lab, OWNER, lease_id, timedelta(hours=24), clock.now)
    assert outcome.code == Code.OVER_PROJECT_CAP
    # 3 x $0.40 x 73h = $87.60, $7.60 past the cap.
    assert "2026-11 by $7.60" in outcome.message  # the shortfall the owner is shown
    after = snapshot(lab.db)
    assert _without_backstop(lease(lab.db, lease_id)) == _without_backstop(row_before)
    for table in (
        "credithold",
        "creditmonth",
        "classmonth",
        "ledgerentry",
        "notice",
        "sentreminder",
    ):
        assert after[table] == before[table], table
    assert audits(lab.db, lease_id)[-1].outcome == "refused"


def test_a_reviewer_cannot_approve_an_extension_past_the_project_cap(lab, clock):
    lab = with_policy(lab, project_cap_cents=8_000, max_total=timedelta(days=2))
    lease_id = active(lab, clock)
    extend(lab, OWNER, lease_id, timedelta(hours=24), clock.now)
    [ext] = _pending(lab)
    before = snapshot(lab.db)
    row_before = lease(lab.db, lease_id)
    refused = decide_extension(lab, REVIEWER, ext.id, True, clock.now)
    assert refused.code == Code.OVER_PROJECT_CAP
    assert "2026-11 by $7.60" in refused.message  # the shortfall the reviewer is shown
    after = snapshot(lab.db)
    assert _without_backstop(lease(lab.db, lease_id)) == _without_backstop(row_before)
    for table in ("credithold", "creditmonth", "classmonth", "ledgerentry", "pendingextension"):
        assert after[table] == before[table], table
    # An admin's override takes it past the cap, written against coredns's cap alone.
    assert decide_extension(lab, ADMIN, ext.id, True, clock.now, override="release week").ok
    [entry] = ledger(lab.db, OVERRIDE)
    assert (entry.project, entry.month, entry.amount_cents, entry.reason) == (
        "coredns",
        "2026-11",
        760,
        "release week",
    )
