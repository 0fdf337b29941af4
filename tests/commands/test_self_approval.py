"""A reviewer does not approve their own request (strongdm/accessbot#105, Teleport's Slack
plugin #121), unless the operator allows it; then the approval says so."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlmodel import select

from bot.settings import from_env
from commands.extend import decide_extension, extend
from commands.lab import Code
from commands.notices import Kind
from commands.review import approve
from storage.models import PendingExtension
from tests.commands.helpers import active, audits, file, lease, snapshot
from tests.conftest import ADMIN, REVIEWER, with_policy


def test_a_reviewer_cannot_approve_their_own_request(lab, clock):
    for reviewer in (REVIEWER, ADMIN):
        lease_id = file(lab, clock, actor=reviewer)
        before = snapshot(lab.db)
        refused = approve(lab, reviewer, lease_id, clock.now)
        assert refused.code == Code.SELF_APPROVAL
        assert snapshot(lab.db) == before
        assert audits(lab.db, lease_id, "approve")[-1].outcome == "refused"
        assert approve(lab, REVIEWER if reviewer == ADMIN else ADMIN, lease_id, clock.now).ok


def test_the_operator_may_allow_it_and_then_it_is_marked_on_the_card_and_in_the_audit(lab, clock):
    lab = with_policy(lab, allow_self_approval=True)
    lease_id = file(lab, clock, actor=REVIEWER)
    assert approve(lab, REVIEWER, lease_id, clock.now).ok
    assert lease(lab.db, lease_id).state in ("approved", "provisioning")
    [event] = [e for e in audits(lab.db, lease_id, "approve") if e.outcome == "ok"]
    assert json.loads(event.details)["self_approved"] is True
    card = [m for m in lab.notifier.messages if m.kind == Kind.CARD_DECIDED][-1]
    assert f"approved (their own request) by <@{REVIEWER}>" in card.text


def test_an_extension_asked_by_a_reviewer_needs_another_reviewer(lab, clock):
    lab = with_policy(lab, max_total=timedelta(days=3))
    lease_id = active(lab, clock, actor=REVIEWER)
    extend(lab, REVIEWER, lease_id, timedelta(days=2), clock.now)
    with lab.db.read() as session:
        [ext] = session.exec(select(PendingExtension)).all()
    ends = lease(lab.db, lease_id).ends_at
    refused = decide_extension(lab, REVIEWER, ext.id, True, clock.now)
    assert refused.code == Code.SELF_APPROVAL
    assert lease(lab.db, lease_id).ends_at == ends
    assert decide_extension(lab, ADMIN, ext.id, True, clock.now).ok


def test_the_setting_is_read_from_the_environment():
    assert from_env({}).policy.allow_self_approval is False
    assert from_env({"LABBOT_ALLOW_SELF_APPROVAL": "yes"}).policy.allow_self_approval is True
