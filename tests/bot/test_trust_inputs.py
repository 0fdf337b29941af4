"""Hostile but realistic input through Slack, as a person would send it: durations no clock
can hold, text of any length, mentions in user text, and lease details asked by strangers."""

from __future__ import annotations

import pytest

from bot.app import SORRY
from bot.blocks import dms
from fakes.slack_sender import field
from tests.bot.conftest import Slack, active_lease, body_of
from tests.bot.test_commands import request_values
from tests.conftest import OWNER

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
