"""Hostile but realistic input through Slack, as a person would send it: durations no clock
can hold, text of any length, mentions in user text, and lease details asked by strangers."""

from __future__ import annotations

import json
import logging

import pytest
from sqlmodel import func, select

from bot.blocks import dms
from bot.blocks.modals import deny_modal, writeup_modal
from bot.work import SORRY
from commands.policy import LIMITS
from commands.pubkeys import PRIVATE_KEY_REFUSAL
from fakes.slack_sender import field
from storage.models import AuditEvent, Lease, Server
from tests.bot.conftest import Slack, active_lease, body_of, file_request, lease_id_in
from tests.bot.test_commands import request_values
from tests.commands.test_keys import PRIVATE
from tests.conftest import ADMIN, OTHER, OWNER, OWNER_KEY, REVIEWER

HUGE = ["99999999999d", "9" * 5000 + "h", "1" + "0" * 40 + "w"]
REQUEST = (
    "request 1 c1.small.x86 ams1 {} project=coredns repo=https://github.com/coredns/coredns "
    '"load tests"'
)


@pytest.mark.parametrize("duration", HUGE, ids=["11 digits", "5000 digits", "41 digits"])
def test_a_duration_no_clock_can_hold_gets_the_policy_sentence_everywhere(
    slack: Slack, duration: str
) -> None:
    lease_id = active_lease(slack)
    slack.command(REQUEST.format(duration), OWNER)
    assert "outside policy; ask for 1h to 14d" in slack.replies()[-1]

    slack.command(f"extend {lease_id} {duration}", OWNER)
    assert "needs a reviewer" in slack.replies()[-1]

    form = slack.sender.view_submission(
        "lab_request", request_values(duration={"value": field(duration)}), OWNER
    )
    slack.settle()
    assert "outside policy" in body_of(form)["errors"]["duration"]

    slack.click(dms.EXTEND, f"{lease_id}-{duration}", OWNER)
    assert "needs a reviewer" in slack.replies()[-1]
    assert SORRY not in str(slack.replies())


def test_text_longer_than_a_person_would_write_is_refused_naming_the_limit(slack: Slack) -> None:
    slack.command(REQUEST.format("24h").replace("load tests", "x" * 10_000), OWNER)
    assert "the purpose is 10,000 characters; the limit is 500" in slack.replies()[-1]

    huge = "y" * 50_000
    values = request_values(
        purpose={"value": field(huge)},
        repo_url={"value": field("https://github.com/" + huge)},
        ssh_key={"value": field("ssh-ed25519 " + huge)},
    )
    errors = body_of(slack.sender.view_submission("lab_request", values, OWNER))["errors"]
    assert "the limit is 500" in errors["purpose"]
    assert "the limit is 200" in errors["repo_url"]
    assert "the limit is 2,000" in errors["ssh_key"]

    lease_id = file_request(slack)
    slack.command(f"deny {lease_id} {'z' * 600}", REVIEWER)
    assert "the reason is 600 characters; the limit is 500" in slack.replies()[-1]
    assert slack.lease(lease_id).state == "pending"
    with slack.db.read() as session:
        assert session.exec(select(func.max(func.length(Lease.purpose)))).one() < 500


def test_the_forms_state_their_limits_so_slack_enforces_them_too(slack: Slack) -> None:
    slack.command("request", OWNER)
    [opened] = slack.fake.calls("views.open")
    limits = {
        b["block_id"]: b["element"].get("max_length")
        for b in opened.params["view"]["blocks"]
        if b["element"]["type"] == "plain_text_input"
    }
    assert limits == {
        "org": LIMITS["org"],
        "project": LIMITS["project"],
        "repo_url": LIMITS["repo_url"],
        "purpose": LIMITS["purpose"],
        "count": None,
        "duration": None,
        "ssh_key": LIMITS["ssh_key"],
    }
    assert deny_modal("lease", 1, "t")["blocks"][0]["element"]["max_length"] == LIMITS["reason"]
    assert writeup_modal(1)["blocks"][0]["element"]["max_length"] == LIMITS["url"]


VICTIM = "U0VICTIM"


def test_a_mention_in_user_text_stays_inert_on_every_surface(slack: Slack) -> None:
    ping = f"<@{VICTIM}>"
    slack.command(
        f"request 1 c1.small.x86 ams1 24h project=coredns "
        f'repo=https://github.com/coredns/{ping} "ask {ping} about it" key="{OWNER_KEY}"',
        OWNER,
    )
    lease_id = lease_id_in(slack.replies()[-1])
    slack.command(f"show {lease_id}", OWNER)
    slack.sender.event({"type": "app_home_opened", "user": REVIEWER, "tab": "home"})
    slack.command(f"deny {lease_id} talk to {ping} first", REVIEWER)
    slack.command(f"extend {ping} 1d", OWNER)
    slack.click("lease_approve", ping, REVIEWER)

    sent = json.dumps([c.params for c in slack.fake.calls() if c.method != "auth.test"])
    assert ping not in sent
    assert "&lt;@U0VICTIM&gt;" in sent
    [card] = [m for m in slack.fake.messages() if m["channel"] == "C0REVIEW"]
    assert f"<@{OWNER}>" in card["text"]  # the mentions labbot means stay live


def test_show_gives_addresses_only_to_the_owner_reviewers_and_admins(slack: Slack) -> None:
    lease_id = active_lease(slack)
    with slack.db.read() as session:
        servers = session.exec(select(Server).where(Server.lease_id == lease_id)).all()
    secrets = [s.hostname for s in servers] + [ip for s in servers for ip in s.ips.split(",")]
    assert all(secrets)
    for user in (OWNER, REVIEWER, ADMIN):
        slack.command(f"show {lease_id}", user)
        assert all(secret in slack.replies()[-1] for secret in secrets), user
    slack.command(f"show {lease_id}", OTHER)
    shown = slack.replies()[-1]
    assert "load tests" in shown or "scale tests" in shown  # the purpose stays open
    assert not any(secret in shown for secret in secrets)
    assert "shown to the owner, co-owners, reviewers and admins" in shown


def test_a_command_labbot_cannot_read_is_answered_audited_and_changes_nothing(
    slack: Slack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    answer = body_of(slack.command("frobnicate 3", OWNER))
    assert "I don't know `frobnicate`" in answer["text"]

    inline = REQUEST.format("24h") + f' key="{PRIVATE}"'
    answer = body_of(slack.command(inline, OWNER))
    assert answer["text"].startswith(PRIVATE_KEY_REFUSAL)
    form = request_values(ssh_key={"value": field(PRIVATE)})
    errors = body_of(slack.sender.view_submission("lab_request", form, OWNER))["errors"]
    assert "rotate it" in errors["ssh_key"]
    no_reason = {"reason": {"value": field(None)}}
    slack.sender.view_submission("lab_deny", no_reason, REVIEWER, private_metadata="lease:1")
    slack.sender.view_submission("lab_from_last_year", {}, OWNER)
    slack.settle()
    assert [e.outcome for e in slack.audits("deny") + slack.audits("form")] == ["refused"] * 2

    refused = [(e.action, e.actor, e.outcome) for e in slack.audits("command")]
    assert refused == [("command", OWNER, "refused")] * 2
    reasons = [json.loads(e.details)["reason"] for e in slack.audits("command")]
    assert "I don't know `frobnicate`" in reasons[0] and reasons[1] == PRIVATE_KEY_REFUSAL
    [form_refusal] = slack.audits("request")
    assert form_refusal.outcome == "refused" and "rotate it" in form_refusal.details
    with slack.db.read() as session:
        assert session.exec(select(func.count()).select_from(Lease)).one() == 0
        rows = session.exec(select(AuditEvent)).all()
    kept = [json.dumps([e.model_dump(mode="json") for e in rows]), caplog.text]
    kept += [json.dumps(c.params) for c in slack.fake.calls()]
    for secret in ("b3BlbnNzaC1", "secretsecret", "QyNTUxOQ"):
        assert not any(secret in text for text in kept), secret
