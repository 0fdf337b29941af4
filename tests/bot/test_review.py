"""Reviewer cards: who may press Approve and Deny, what the card becomes, and races."""

from __future__ import annotations

import threading

from bot.blocks import cards, modals
from bot.work import SORRY, answered
from commands.lab import move
from commands.review import deny
from commands.states import State
from fakes.slack_sender import field
from storage.models import Lease
from tests.bot.conftest import REVIEW_CHANNEL, Slack, file_request
from tests.conftest import ADMIN, OTHER, OWNER, REVIEWER


def card_text(slack: Slack, lease_id: int) -> str:
    message = slack.fake.current_message(*slack.card_ref(lease_id))
    return message["text"] + str(message["blocks"])


def test_the_card_shows_what_a_reviewer_needs(slack: Slack) -> None:
    lease_id = file_request(slack)
    text = card_text(slack, lease_id)
    for fact in (
        f"<@{OWNER}>",
        "coredns",
        "https://github.com/coredns/coredns",
        "3 x c1.small.x86",
        "for 2d",
        "$58.80",
        "2026-11:",
        "Past leases",
    ):
        assert fact in text, fact


def test_approve_on_the_card_provisions_and_updates_the_card_in_place(slack: Slack) -> None:
    lease_id = file_request(slack)
    answer = slack.card_click(cards.APPROVE, lease_id, REVIEWER)
    assert answer.status_code == 200
    assert slack.lease(lease_id).state == "provisioning"
    text = card_text(slack, lease_id)
    assert f"approved by <@{REVIEWER}>" in text
    assert "<!date^1793610000^{date_short_pretty} {time}|Nov 2, 2026 09:00 UTC>" in text
    assert "Approve" not in text and "scale tests of the kubernetes plugin" in text
    dms = [m["text"] for m in slack.dms(OWNER)]
    assert any("was approved" in t for t in dms) and any("Provisioning" in t for t in dms)


def test_a_non_reviewer_is_refused_ephemerally_and_audited(slack: Slack) -> None:
    lease_id = file_request(slack)
    for action in (cards.APPROVE, cards.DENY):
        slack.card_click(action, lease_id, OTHER)
    replies = slack.replies()[-2:]
    assert all("Only reviewers" in r for r in replies)
    assert slack.lease(lease_id).state == "pending"
    refused = [e for e in slack.audits("approve") + slack.audits("deny") if e.actor == OTHER]
    assert len(refused) == 2 and all(e.outcome == "refused" for e in refused)
    assert not slack.fake.calls("views.open")


def test_deny_asks_for_a_reason_in_a_modal_and_tells_the_owner(slack: Slack) -> None:
    lease_id = file_request(slack)
    slack.card_click(cards.DENY, lease_id, REVIEWER)
    [opened] = slack.fake.calls("views.open")
    view = opened.params["view"]
    empty = slack.sender.view_submission(
        view["callback_id"],
        {"reason": {"value": field(None)}},
        REVIEWER,
        private_metadata=view["private_metadata"],
    )
    assert empty.json()["errors"] == {"reason": "Say why, so the requester knows what to change."}
    slack.sender.view_submission(
        modals.DENY,
        {"reason": {"value": field("not what the lab is for")}},
        REVIEWER,
        private_metadata=view["private_metadata"],
    )
    slack.settle()
    assert slack.lease(lease_id).state == "denied"
    assert "Reason: not what the lab is for" in slack.dms(OWNER)[-1]["text"]
    assert f"denied by <@{REVIEWER}>" in card_text(slack, lease_id)


def test_a_second_click_changes_nothing_and_says_who_decided(slack: Slack) -> None:
    lease_id = file_request(slack)
    slack.card_click(cards.APPROVE, lease_id, REVIEWER)
    slack.card_click(cards.APPROVE, lease_id, ADMIN)
    assert f"already approved by <@{REVIEWER}>" in slack.replies()[-1]
    assert len(slack.fake.calls("chat.update")) == 1
    assert len([e for e in slack.audits("approve") if e.outcome == "ok"]) == 1


def test_two_reviewers_clicking_at_once_yield_one_approval(slack: Slack) -> None:
    lease_id = file_request(slack)
    channel, ts = slack.card_ref(lease_id)
    barrier = threading.Barrier(2)

    def click(user: str) -> None:
        barrier.wait()
        slack.sender.block_action(
            f"{cards.APPROVE}:{lease_id}", str(lease_id), user, channel_id=channel, message_ts=ts
        )

    threads = [threading.Thread(target=click, args=(u,)) for u in (REVIEWER, ADMIN)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    slack.settle()
    assert len([e for e in slack.audits("approve") if e.outcome == "ok"]) == 1
    already = [r for r in slack.replies() if "already approved by" in r]
    assert len(already) == 1
    assert len(slack.fake.calls("chat.update")) == 1


def test_a_reviewer_group_member_may_decide(fake, db, clock) -> None:
    from tests.bot.conftest import serve, settings_for

    fake.set_usergroup("S0REVIEW", ["U0GROUPIE"])
    for slack in serve(fake, db, clock, settings_for(fake, reviewer_group="S0REVIEW")):
        lease_id = file_request(slack)
        slack.card_click(cards.APPROVE, lease_id, "U0GROUPIE")
        assert slack.lease(lease_id).decided_by == "U0GROUPIE"
        assert fake.calls("usergroups.users.list")


def test_an_extension_beyond_policy_becomes_a_card_reviewers_decide(slack: Slack) -> None:
    from tests.bot.conftest import active_lease

    lease_id = active_lease(slack)
    slack.command(f"extend {lease_id} 29d", OWNER)
    assert "needs a reviewer" in slack.replies()[-1]
    [card] = [
        c
        for c in slack.fake.calls("chat.postMessage")
        if c.ok and any(b.get("block_id", "").startswith("extension:") for b in c.params["blocks"])
    ]
    extension_id = card.params["blocks"][-1]["block_id"].split(":")[1]
    slack.click(
        cards.EXTENSION_APPROVE,
        extension_id,
        REVIEWER,
        channel_id=REVIEW_CHANNEL,
        message_ts=card.response["ts"],
    )
    assert slack.lease(lease_id).extended_s == 29 * 86400
    updated = slack.fake.current_message(card.response["channel"], card.response["ts"])
    assert "approved by" in updated["text"]


def test_a_caller_that_lost_the_race_is_told_so_and_nothing_else_happens(slack: Slack) -> None:
    """A use case that holds the row cannot lose, but a step that raced without it must still
    end in a sentence: the lease was read pending, a reviewer denied it first, and the loser's
    conditional update matched no row."""
    lease_id = file_request(slack)
    with slack.db.read() as session:
        stale = session.get(Lease, lease_id)
        assert stale is not None and stale.state == State.PENDING
    assert deny(slack.ctx.lab, REVIEWER, lease_id, "not open source", slack.clock()).ok

    def approve_from_a_stale_read() -> None:
        with slack.db.write() as session:
            move(session, session.merge(stale, load=False), State.APPROVED)

    slack.ctx.work.submit(answered, slack.ctx, {"user": {"id": ADMIN}}, approve_from_a_stale_read)
    slack.settle()
    told = [m["text"] for m in slack.dms(ADMIN)]
    assert told == [
        f"Lease #{lease_id} changed meanwhile; it was not moved to approved. Nothing else was "
        f"done; `/lab show {lease_id}` says where it is now."
    ]
    assert SORRY not in str(told)
    assert slack.lease(lease_id).state == State.DENIED
