"""Several metros through Slack: the request form's metros (a multi_static_select the fake
Slack checks as Slack does) with a count each or per metro, and the inline command."""

from __future__ import annotations

from fakes.slack_sender import field, multi_select
from tests.bot.conftest import INLINE, Slack, body_of, lease_id_in
from tests.bot.test_commands import request_values
from tests.conftest import OWNER

THREE = ["ams1", "ewr1", "sjc1"]


def test_the_form_offers_several_metros_and_files_one_lease_across_them(slack: Slack) -> None:
    slack.command("request", OWNER)
    [opened] = slack.fake.calls("views.open")
    assert opened.ok  # the fake checks the view as Slack would
    blocks = {b["block_id"]: b for b in opened.params["view"]["blocks"]}
    assert blocks["metro"]["element"]["type"] == "multi_static_select"
    assert "ams1:4,ewr1:2" in blocks["count"]["hint"]["text"]

    values = request_values(metro={"value": multi_select(THREE)}, count={"value": field("2")})
    submitted = slack.sender.view_submission("lab_request", values, OWNER)
    slack.settle()
    assert submitted.status_code == 200 and submitted.text == ""
    [dm] = slack.dms(OWNER)
    assert "6 x c1.small.x86 in ams1 (2), ewr1 (2), sjc1 (2)" in dm["text"]
    lease = slack.lease(lease_id_in(dm["text"]))
    assert (lease.count, lease.per_metro()) == (6, {"ams1": 2, "ewr1": 2, "sjc1": 2})


def test_a_count_per_metro_in_the_form(slack: Slack) -> None:
    values = request_values(
        metro={"value": multi_select(["ams1", "ewr1"])}, count={"value": field("ewr1:1,ams1:4")}
    )
    slack.sender.view_submission("lab_request", values, OWNER)
    slack.settle()
    [dm] = slack.dms(OWNER)
    assert slack.lease(lease_id_in(dm["text"])).per_metro() == {"ewr1": 1, "ams1": 4}


def test_counts_that_do_not_match_the_metros_come_back_under_the_count(slack: Slack) -> None:
    for metros, count in [(["ams1", "ewr1"], "ams1:4"), (["ams1"], "two"), ([], "2")]:
        chosen = {"value": multi_select(metros)}
        values = request_values(metro=chosen, count={"value": field(count)})
        body = body_of(slack.sender.view_submission("lab_request", values, OWNER))
        slack.settle()
        assert body["response_action"] == "errors"
        assert set(body["errors"]) == ({"count"} if metros else {"metro"}), count
    assert not slack.dms(OWNER)


def test_an_inline_request_across_metros_and_a_repeated_metro(slack: Slack) -> None:
    typed = INLINE.replace("request 3 c1.small.x86 ams1 48h", "request c1.small.x86 48h") + (
        " metro=ams1:4,ewr1:2"
    )
    slack.command(typed, OWNER)
    slack.settle()
    [reply] = slack.replies()
    assert "6 x c1.small.x86 in ams1 (4), ewr1 (2)" in reply
    refused = slack.command(typed.replace("ewr1:2", "ams1:2"), OWNER)
    slack.settle()
    assert "ams1 is named twice" in body_of(refused)["text"]
    assert [a.outcome for a in slack.audits("command")] == ["refused"]
