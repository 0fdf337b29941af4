"""What arrives over HTTP that is not a well-formed click: forged or stale signatures, unknown
buttons and forms, payloads missing fields; and the 3-second ack under a slow provider."""

from __future__ import annotations

import json
import time

import pytest
from sqlmodel import func, select

from bot.blocks import cards
from fakes.slack_sender import field
from storage.models import AuditEvent, Lease
from tests.bot.conftest import INLINE, Slack, file_request
from tests.conftest import OWNER, REVIEWER


def rows(slack: Slack) -> tuple[int, int]:
    with slack.db.read() as session:
        leases = session.exec(select(func.count()).select_from(Lease)).one()
        return leases, session.exec(select(func.count()).select_from(AuditEvent)).one()


@pytest.mark.parametrize("signature", ["bad", "none", "stale"])
def test_an_unsigned_forged_or_stale_request_is_refused_and_writes_nothing(
    slack: Slack, signature: str
) -> None:
    before = rows(slack)
    answers = [
        slack.sender.slash_command(text=INLINE, user_id=OWNER, signature=signature),
        slack.sender.block_action(f"{cards.APPROVE}:1", "1", REVIEWER, signature=signature),
        slack.sender.view_submission("lab_request", {}, OWNER, signature=signature),
        slack.sender.event({"type": "app_home_opened", "user": OWNER}, signature=signature),
    ]
    slack.settle()
    assert [a.status_code for a in answers] == [401] * 4
    assert rows(slack) == before
    assert [c.method for c in slack.fake.calls() if c.method != "auth.test"] == []


def test_url_verification_is_answered(slack: Slack) -> None:
    assert slack.sender.url_verification("abc123").json() == {"challenge": "abc123"}


def test_an_unknown_button_is_acknowledged_and_explained(slack: Slack) -> None:
    answer = slack.click("launch_rocket", "1", OWNER)
    assert answer.status_code == 200
    assert "does not know the button `launch_rocket:1`" in slack.replies()[-1]


def test_a_button_with_a_forged_value_gets_a_sentence(slack: Slack) -> None:
    slack.click(cards.APPROVE, "DROP TABLE", REVIEWER)
    assert "not a lease or extension number" in slack.replies()[-1]
    slack.click(cards.APPROVE, "999", REVIEWER)
    assert "There is no lease #999" in slack.replies()[-1]


def test_an_unknown_form_is_acknowledged_and_explained(slack: Slack) -> None:
    answer = slack.sender.view_submission("lab_mystery", {}, OWNER)
    slack.settle()
    assert answer.status_code == 200
    assert "does not know the form" in slack.dms(OWNER)[-1]["text"]


def test_a_deny_form_that_lost_its_target_says_so(slack: Slack) -> None:
    slack.sender.view_submission(
        "lab_deny", {"reason": {"value": field("no")}}, REVIEWER, private_metadata="garbage"
    )
    slack.settle()
    assert "lost track" in slack.dms(REVIEWER)[-1]["text"]


def test_payloads_missing_fields_get_an_answer_not_a_500(slack: Slack) -> None:
    no_user = {
        "type": "block_actions",
        "actions": [{"action_id": "lease_approve:1"}],
        "response_url": slack.fake.response_url("bare"),
        "team": {"id": "T0FAKELAB"},
    }
    no_listener = {
        "type": "shortcut",
        "callback_id": "lab_rocket",
        "user": {"id": REVIEWER},
        "response_url": slack.fake.response_url("bare2"),
        "team": {"id": "T0FAKELAB"},
    }
    for payload in (no_user, no_listener):
        body = ("payload=" + json.dumps(payload)).encode()
        answer = slack.sender.post(body, "application/x-www-form-urlencoded")
        slack.settle()
        assert answer.status_code == 200, payload
    replies = slack.replies()
    assert any("came without a Slack user" in r for r in replies)
    assert any("named no button or form" in r for r in replies)
    command = slack.sender.slash_command(text="list", user_id="")
    assert "came without a Slack user" in command.json()["text"]


def test_approve_is_acknowledged_within_three_seconds_while_the_provider_takes_ten(
    slack: Slack,
) -> None:
    lease_id = file_request(slack)
    slack.ctx.lab.provider.inner.create_delay = 10
    channel, ts = slack.card_ref(lease_id)
    started = time.monotonic()
    answer = slack.sender.block_action(
        f"{cards.APPROVE}:{lease_id}",
        str(lease_id),
        REVIEWER,
        channel_id=channel,
        message_ts=ts,
    )
    acked = time.monotonic() - started
    assert answer.status_code == 200
    assert acked < 3.0, f"ack took {acked:.2f}s"
    # The ack came while the provider was still slow; now let it answer, so the listener (which
    # the fixture waits for before closing the DB) ends without sleeping out the ten seconds.
    slack.ctx.lab.provider.inner.answer_now.set()
