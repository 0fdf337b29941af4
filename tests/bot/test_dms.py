"""The owner's side: DMs with buttons, App Home, the write-up, and a Slack that fails."""

from __future__ import annotations

from datetime import timedelta

from bot.blocks import cards, dms, modals
from commands.notices import deliver
from commands.sweep import sweep
from fakes.slack_sender import field
from tests.bot.conftest import Slack, active_lease, file_request
from tests.commands.helpers import notices
from tests.conftest import OTHER, OWNER, REVIEWER


def dm_with_buttons(slack: Slack, action: str) -> dict:
    """The owner's latest DM that offers `action`, as Slack shows it now."""
    for call in reversed(slack.fake.calls("chat.postMessage")):
        ids = [
            e["action_id"]
            for b in call.params.get("blocks", [])
            for e in b.get("elements", [])
            if b["type"] == "actions"
        ]
        if call.ok and any(i.startswith(action + ":") for i in ids):
            return {"channel": call.response["channel"], "ts": call.response["ts"], "ids": ids}
    raise AssertionError(f"no DM offers {action}")


def test_ready_dm_says_how_to_log_in(slack: Slack) -> None:
    lease_id = active_lease(slack)
    [ready] = [m for m in slack.dms(OWNER) if "is ready" in m["text"]]
    assert f"coredns-{lease_id}-1" in ready["text"]
    assert "ssh root@" in str(ready["blocks"])


def test_reminder_buttons_extend_and_release_the_lease(slack: Slack) -> None:
    lease_id = active_lease(slack)
    ends = slack.lease(lease_id).ends_at
    sweep(slack.ctx.lab, slack.clock.advance(hours=24))
    reminder = dm_with_buttons(slack, dms.EXTEND)
    assert f"{dms.EXTEND}:{lease_id}-1d" in reminder["ids"]
    assert f"{dms.EXTEND}:{lease_id}-3d" in reminder["ids"]

    slack.click(
        dms.EXTEND,
        f"{lease_id}-1d",
        OWNER,
        channel_id=reminder["channel"],
        message_ts=reminder["ts"],
    )
    assert slack.lease(lease_id).ends_at == ends + timedelta(days=1)
    assert "extended by 1d" in slack.replies()[-1]

    slack.click(
        dms.RELEASE, str(lease_id), OTHER, channel_id=reminder["channel"], message_ts=reminder["ts"]
    )
    assert "only its owner" in slack.replies()[-1]
    slack.click(
        dms.RELEASE, str(lease_id), OWNER, channel_id=reminder["channel"], message_ts=reminder["ts"]
    )
    assert slack.lease(lease_id).state in {"releasing", "reclaimed"}


def test_after_the_lease_the_owner_sends_a_writeup_link_through_a_modal(slack: Slack) -> None:
    lease_id = active_lease(slack)
    slack.command(f"release {lease_id}", OWNER)
    sweep(slack.ctx.lab, slack.clock.advance(minutes=1))
    sweep(slack.ctx.lab, slack.clock.advance(minutes=1))
    assert slack.lease(lease_id).state == "reclaimed"
    button = dm_with_buttons(slack, dms.WRITEUP)
    slack.click(
        dms.WRITEUP, str(lease_id), OWNER, channel_id=button["channel"], message_ts=button["ts"]
    )
    view = slack.fake.calls("views.open")[-1].params["view"]
    slack.sender.view_submission(
        modals.WRITEUP,
        {"url": {"value": field("https://blog.example.org/coredns-lab")}},
        OWNER,
        private_metadata=view["private_metadata"],
    )
    slack.settle()
    assert slack.lease(lease_id).writeup_url == "https://blog.example.org/coredns-lab"
    assert "Thank you" in slack.dms(OWNER)[-1]["text"]


def test_app_home_is_published_once_per_event_and_shows_leases_credit_and_queue(
    slack: Slack,
) -> None:
    lease_id = file_request(slack)
    event = {"type": "app_home_opened", "user": REVIEWER, "channel": "D0HOME", "tab": "home"}
    slack.fake.reset()
    for retry in (None, 1):
        assert slack.sender.event(event, event_id="Ev0HOME1", retry_num=retry).status_code == 200
    slack.settle()
    [published] = slack.fake.calls("views.publish")
    home = str(published.params["view"]["blocks"])
    assert "Waiting for review" in home and f"lease_approve:{lease_id}" in home
    assert "Granted" in home and "$25,000.00" in home

    slack.sender.event({**event, "user": OWNER}, event_id="Ev0HOME2")
    slack.settle()
    owner_home = str(slack.fake.calls("views.publish")[-1].params["view"]["blocks"])
    assert f"#{lease_id} coredns" in owner_home and f"lease_cancel:{lease_id}" in owner_home
    assert "Waiting for review" not in owner_home


def test_home_is_refreshed_after_a_click_by_that_user(slack: Slack) -> None:
    lease_id = file_request(slack)
    slack.fake.reset()
    slack.click(dms.CANCEL, str(lease_id), OWNER, view={"id": "V0HOME", "type": "home"})
    assert slack.lease(lease_id).state == "cancelled"
    [published] = slack.fake.calls("views.publish")
    assert published.params["user_id"] == OWNER
    assert "cancelled" in slack.dms(OWNER)[-1]["text"]  # no response_url on Home: a DM


def test_a_dm_that_slack_refuses_arrives_later_and_the_state_change_stands(
    slack: Slack,
) -> None:
    lease_id = file_request(slack)
    slack.fake.fail_next("chat.postMessage", status=429, retry_after=30)
    slack.fake.fail_next("chat.postMessage", status=500, times=2)
    slack.card_click(cards.APPROVE, lease_id, REVIEWER)
    assert slack.lease(lease_id).state == "provisioning"
    assert (
        f"approved by <@{REVIEWER}>"
        in slack.fake.current_message(*slack.card_ref(lease_id))["text"]
    )
    assert not any("approved" in m["text"] for m in slack.dms(OWNER))

    lab = slack.ctx.lab
    # Slack's 500s: the notices wait out their backoff, then go, in the order queued.
    assert deliver(slack.db, lab.notifier, slack.clock.advance(minutes=5), owner=lab.replica) == 0
    assert deliver(slack.db, lab.notifier, slack.clock.advance(minutes=5), owner=lab.replica) == 2
    texts = [m["text"] for m in slack.dms(OWNER)]
    assert "was approved" in texts[-2] and "Provisioning" in texts[-1]
    assert slack.lease(lease_id).state == "provisioning"


def test_a_rate_limited_dm_waits_for_retry_after_and_holds_up_nothing_else(slack: Slack) -> None:
    slack.fake.fail_next("chat.postMessage", status=429, retry_after=2)
    lease_id = file_request(slack)
    first, card = slack.fake.calls("chat.postMessage")
    assert (first.status, card.status) == (429, 200), "the review channel was not held up"
    assert slack.card_ref(lease_id)
    [waiting] = [n for n in notices(slack.db) if n.delivered_at is None]
    assert waiting.retry_at == slack.clock.now + timedelta(seconds=2)
    assert "rate-limited for 2s" in waiting.last_error

    lab = slack.ctx.lab
    assert deliver(slack.db, lab.notifier, slack.clock.advance(seconds=1), owner=lab.replica) == 0
    assert deliver(slack.db, lab.notifier, slack.clock.advance(seconds=1), owner=lab.replica) == 1
    assert len(slack.dms(OWNER)) == 1
    assert len(slack.fake.calls("chat.postMessage")) == 3, "one 429, then one post each"
