"""The idle question's buttons through the real App over HTTP: *Still using it* and *Release now*
in the owner's DM and on the reviewers' message, refused (and audited) for anyone else, for an
older question and for one already answered."""

from __future__ import annotations

from datetime import timedelta

from bot.blocks import dms
from commands.sweep import sweep
from tests.bot.conftest import REVIEW_CHANNEL, Slack, active_lease
from tests.bot.test_dms import dm_with_buttons
from tests.commands.samples import QUIET, report
from tests.conftest import OTHER, OWNER, REVIEWER


def idle_for_hours(slack: Slack, lease_id: int, hours: float) -> None:
    start = slack.clock.now
    report(slack.db, lease_id, start, slack.clock.advance(hours=hours), **QUIET)
    sweep(slack.ctx.lab, slack.clock.now)


def test_still_using_it_in_the_dm_quiets_the_question(slack: Slack) -> None:
    lease_id = active_lease(slack)
    idle_for_hours(slack, lease_id, 6.1)
    question = dm_with_buttons(slack, dms.IDLE_KEEP)
    assert f"{dms.IDLE_RELEASE}:{lease_id}-1" in question["ids"]
    where = {"channel_id": question["channel"], "message_ts": question["ts"]}

    slack.click(dms.IDLE_KEEP, f"{lease_id}-1", OTHER, **where)
    assert "only its owner, a co-owner, a reviewer or an admin" in slack.replies()[-1]
    slack.click(dms.IDLE_KEEP, f"{lease_id}-9", OWNER, **where)
    assert "is not its latest" in slack.replies()[-1]
    slack.click(dms.IDLE_KEEP, f"{lease_id}-1", OWNER, **where)
    assert "will not ask about it again before" in slack.replies()[-1]
    slack.click(dms.IDLE_RELEASE, f"{lease_id}-1", OWNER, **where)
    assert "already answered" in slack.replies()[-1]
    slack.click(dms.IDLE_RELEASE, "not-a-lease", OWNER, **where)
    assert "which is not a lease" in slack.replies()[-1]

    assert slack.lease(lease_id).state == "active"
    refused = [a.actor for a in slack.audits("idle_keep") if a.outcome == "refused"]
    assert refused == [OTHER, OWNER]
    assert [a.outcome for a in slack.audits("release")] == ["refused"]


def test_unanswered_the_reviewers_get_the_buttons_and_one_releases(slack: Slack) -> None:
    lease_id = active_lease(slack)
    idle_for_hours(slack, lease_id, 6.1)
    report(slack.db, lease_id, slack.clock.now, slack.clock.now + timedelta(hours=12), **QUIET)
    sweep(slack.ctx.lab, slack.clock.advance(hours=12))
    [told] = [m for m in slack.fake.messages(REVIEW_CHANNEL) if "have not answered" in m["text"]]
    ids = [e["action_id"] for b in told["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert ids == [f"{dms.IDLE_KEEP}:{lease_id}-1", f"{dms.IDLE_RELEASE}:{lease_id}-1"]

    slack.click(dms.IDLE_RELEASE, f"{lease_id}-1", REVIEWER, channel_id=REVIEW_CHANNEL)
    assert "released" in slack.replies()[-1]
    assert slack.lease(lease_id).state in {"releasing", "reclaimed"}
    slack.click(dms.IDLE_RELEASE, f"{lease_id}-1", OWNER, channel_id=REVIEW_CHANNEL)
    assert slack.lease(lease_id).state in {"releasing", "reclaimed"}
    assert [a.actor for a in slack.audits("idle_release")] == [REVIEWER]


def test_show_gives_each_server_s_last_activity_and_app_home_marks_the_idle_lease(
    slack: Slack,
) -> None:
    lease_id = active_lease(slack)
    idle_for_hours(slack, lease_id, 6.1)
    slack.command(f"show {lease_id}", OWNER)
    shown = slack.replies()[-1]
    assert f"coredns-{lease_id}-1 [active]" in shown
    assert "last activity" in shown and "(server): CPU 1%, 1.2 MB/h, no sessions" in shown
    slack.click(dms.IDLE_KEEP, f"{lease_id}-1", OWNER)  # every click publishes App Home
    home = slack.fake.calls("views.publish")[-1].params["view"]
    assert ":zzz: Idle" not in str(home)  # answered: no longer asked about
    sweep(slack.ctx.lab, slack.clock.advance(hours=25))
    report(slack.db, lease_id, slack.clock.now - timedelta(hours=7), slack.clock.now, **QUIET)
    sweep(slack.ctx.lab, slack.clock.advance(minutes=15))  # unknown until then: looked at again
    slack.command(f"show {lease_id}", OWNER)
    slack.click(dms.IDLE_KEEP, "0-0", OWNER)
    home = slack.fake.calls("views.publish")[-1].params["view"]
    assert ":zzz: Idle: nothing has used it since" in str(home)
