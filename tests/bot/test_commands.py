"""`/lab` over HTTP: inline requests, the form, read-only answers, and bad input."""

from __future__ import annotations

from fakes.slack_sender import field, multi_select, select
from tests.bot.conftest import INLINE, Slack, body_of, file_request, lease_id_in
from tests.conftest import OTHER, OWNER, OWNER_KEY


def test_help_is_answered_inside_the_ack(slack: Slack) -> None:
    answer = slack.command("help", OWNER)
    assert answer.status_code == 200
    body = body_of(answer)
    assert body["response_type"] == "ephemeral"
    assert "/lab extend ID DURATION" in body["text"]


def test_an_inline_request_files_a_lease_posts_a_card_and_dms_the_owner(slack: Slack) -> None:
    answer = slack.command(INLINE, OWNER)
    assert answer.status_code == 200 and answer.text == ""
    [reply] = slack.replies()
    assert reply.startswith("Request #")
    lease = slack.lease(lease_id_in(reply))
    assert (lease.state, lease.count, lease.project) == ("pending", 3, "coredns")
    channel, ts = slack.card_ref(lease.id)
    card = slack.fake.current_message(channel, ts)
    assert "scale tests of the kubernetes plugin" in str(card["blocks"])
    assert "Approve" in str(card["blocks"])
    [dm] = slack.dms(OWNER)
    assert "received" in dm["text"]


def request_values(**changes: dict) -> dict:
    values = {
        "project": {"value": field("coredns")},
        "repo_url": {"value": field("https://github.com/coredns/coredns")},
        "purpose": {"value": field("scale tests")},
        "plan": {"value": select("c1.small.x86")},
        "metro": {"value": multi_select(["ams1"])},
        "os": {"value": select(None)},
        "count": {"value": field("2")},
        "duration": {"value": field("36h")},
        "ssh_key": {"value": field(OWNER_KEY)},
    }
    return {**values, **changes}


def test_request_without_arguments_opens_the_form_and_its_submission_files_a_lease(
    slack: Slack,
) -> None:
    answer = slack.command("request", OWNER)
    assert answer.status_code == 200
    [opened] = slack.fake.calls("views.open")
    assert opened.ok
    view = opened.params["view"]
    blocks = {b["block_id"]: b for b in view["blocks"]}
    assert set(blocks) >= {"project", "repo_url", "purpose", "plan", "metro", "os"}
    assert {"count", "duration", "ssh_key"} <= set(blocks)
    plan_texts = [o["text"]["text"] for o in blocks["plan"]["element"]["options"]]
    assert any("c1.small.x86" in t and "$0.40/h" in t for t in plan_texts)

    submitted = slack.sender.view_submission(view["callback_id"], request_values(), OWNER)
    slack.settle()
    assert submitted.status_code == 200 and submitted.text == ""
    [dm] = slack.dms(OWNER)
    lease = slack.lease(lease_id_in(dm["text"]))
    assert (lease.count, lease.duration_s, lease.state) == (2, 36 * 3600, "pending")
    assert lease.ssh_key.startswith("ssh-ed25519")


def test_bad_form_fields_come_back_as_inline_errors_and_file_nothing(slack: Slack) -> None:
    values = request_values(
        count={"value": field("three")},
        duration={"value": field("forever")},
        repo_url={"value": field("github")},
        plan={"value": select(None)},
    )
    answer = slack.sender.view_submission("lab_request", values, OWNER)
    slack.settle()
    body = body_of(answer)
    assert body["response_action"] == "errors"
    assert set(body["errors"]) == {"count", "duration", "repo_url", "plan"}
    assert "like" in body["errors"]["duration"]
    assert not slack.dms(OWNER) and not slack.fake.messages()


def test_read_only_commands_answer_through_the_response_url(slack: Slack) -> None:
    lease_id = file_request(slack)
    for text, expected in [
        ("list", f"#{lease_id} coredns"),
        (f"show {lease_id}", "State: pending"),
        ("credit", "Credit for 2026-11"),
        ("plans", "c1.small.x86"),
    ]:
        slack.fake.reset()
        assert slack.command(text, OWNER).status_code == 200
        assert expected in slack.replies()[-1], text


def test_unknown_and_malformed_commands_get_a_sentence_saying_what_would_be_right(
    slack: Slack,
) -> None:
    for text, expected in [
        ("frobnicate", "try one of request"),
        ("show twelve", "Usage: `show ID [servers PAGE]"),
        ("extend 1 forever", "30s, 90m"),
        ("deny 4", "reason"),
        ('request 3 c1.small.x86 ams1 48h "unclosed', "close every quote"),
    ]:
        body = body_of(slack.command(text, OWNER))
        assert body["response_type"] == "ephemeral" and expected in body["text"], text


def test_someone_elses_lease_is_refused_ephemerally(slack: Slack) -> None:
    lease_id = file_request(slack)
    slack.fake.reset()
    slack.command(f"cancel {lease_id}", OTHER)
    assert "only its owner or an admin" in slack.replies()[-1]
    assert slack.lease(lease_id).state == "pending"
    slack.command("show 999", OTHER)
    assert "There is no lease #999" in slack.replies()[-1]


def test_an_inline_request_with_bad_fields_says_each_problem(slack: Slack) -> None:
    slack.command("request 3 c9.huge ams1 48h project=coredns", OWNER)
    [reply] = slack.replies()
    assert "unknown plan 'c9.huge'" in reply and "repository URL" in reply
    assert not slack.fake.messages()


def test_user_text_cannot_ping_the_channel_or_spoof_links(slack: Slack) -> None:
    slack.command(
        "request 1 c1.small.x86 ams1 24h project=coredns repo=https://github.com/coredns/coredns "
        f'"<!channel> see <https://evil.example|github.com> & more" key="{OWNER_KEY}"',
        OWNER,
    )
    [card] = [m for m in slack.fake.messages() if m["channel"] == "C0REVIEW"]
    text = str(card["blocks"]) + card["text"]
    assert "<!channel>" not in text and "<https://evil" not in text
    assert "&lt;!channel&gt;" in text and "&amp; more" in text
    assert f"<@{OWNER}>" in text
