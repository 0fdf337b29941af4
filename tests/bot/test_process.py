"""The lab's process through the real App over HTTP: the form and the inline grammar take who is
asking, the card is edited in place once the fake forge answers, reviewers read the ranked queue
with /lab queue and on App Home, and a reserve refusal reaches the reviewer as a sentence."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.blocks import cards
from commands.policy import Policy
from fakes.forge import FakeForge
from fakes.slack import FakeSlack
from fakes.slack_sender import field, select
from storage.db import Database
from tests.bot.conftest import INLINE, Slack, lease_id_in, serve, settings_for
from tests.bot.test_commands import request_values
from tests.conftest import OTHER, OWNER, OWNER_KEY, REVIEWER, Clock

POLICY = Policy(
    monthly_credit_cents=100_000,
    foundation_projects=(("coredns", "graduated"),),
    members=("Acme",),
)


@pytest.fixture
def forge(clock: Clock) -> Iterator[FakeForge]:
    with FakeForge(clock=clock) as fake:
        fake.add_repo("github", "coredns/coredns", license="Apache-2.0")
        yield fake


@pytest.fixture
def lab_slack(fake: FakeSlack, db: Database, clock: Clock, forge: FakeForge) -> Iterator[Slack]:
    settings = settings_for(
        fake, policy=POLICY, github_api_url=forge.github_url, gitlab_api_url=forge.gitlab_url
    )
    yield from serve(fake, db, clock, settings)


def _card_text(slack: Slack, lease_id: int) -> str:
    channel, ts = slack.card_ref(lease_id)
    return str(slack.fake.current_message(channel, ts)["blocks"])


def test_the_card_says_pending_then_what_the_forge_said(lab_slack: Slack) -> None:
    lab_slack.command(INLINE + " class=foundation", OWNER)
    lease_id = lease_id_in(lab_slack.replies()[-1])
    [posted] = [c for c in lab_slack.fake.calls("chat.postMessage") if "review:" in str(c.params)]
    assert "check pending" in str(posted.params["blocks"])
    card = _card_text(lab_slack, lease_id)
    assert "public, Apache-2.0 (OSI-approved)" in card
    assert "foundation project (graduated)" in card and "1 of 1" in card
    assert "lease_approve" in card  # still a card to decide on


def test_the_form_takes_who_is_asking_and_an_unmatched_claim_is_flagged(lab_slack: Slack) -> None:
    lab_slack.command("request", OWNER)
    view = lab_slack.fake.calls("views.open")[-1].params["view"]
    blocks = {b["block_id"]: b for b in view["blocks"]}
    assert [o["value"] for o in blocks["applicant"]["element"]["options"]] == [
        "foundation", "member", "other"
    ]  # fmt: skip
    values = request_values(applicant={"value": select("member")}, org={"value": field("Globex")})
    lab_slack.sender.view_submission(view["callback_id"], values, OWNER)
    lab_slack.settle()
    [dm] = lab_slack.dms(OWNER)
    assert "'Globex' is not a member organization (Acme)" in dm["text"]
    lease = lab_slack.lease(lease_id_in(dm["text"]))
    assert (lease.claimed_class, lease.applicant_class) == ("member", "other")
    assert "Flagged for reviewers" in _card_text(lab_slack, lease.id)


def test_a_bad_class_in_the_form_is_an_inline_error(lab_slack: Slack) -> None:
    values = request_values(applicant={"value": select("member")})
    answer = lab_slack.sender.view_submission("lab_request", values, OWNER)
    lab_slack.settle()
    assert answer.json()["errors"]["applicant"].startswith("say which member organization")
    assert not lab_slack.fake.messages()


def test_reviewers_read_the_ranked_queue(lab_slack: Slack) -> None:
    lab_slack.command(INLINE, OWNER)
    other = lease_id_in(lab_slack.replies()[-1])
    lab_slack.clock.advance(minutes=1)
    lab_slack.command(INLINE + " class=member org=acme", OTHER)
    member = lease_id_in(lab_slack.replies()[-1])
    lab_slack.command("queue", REVIEWER)
    lines = lab_slack.replies()[-1].splitlines()
    assert lines[1].startswith(f"1. [member organization Acme] #{member} coredns")
    assert lines[2].startswith(f"2. [other open-source project] #{other} coredns")
    lab_slack.command("queue", OWNER)
    assert "Only reviewers see the queue" in lab_slack.replies()[-1]
    event = {"type": "app_home_opened", "user": REVIEWER, "channel": "D0HOME", "tab": "home"}
    lab_slack.sender.event(event, event_id="Ev0QUEUE")
    lab_slack.settle()
    home = str(lab_slack.fake.calls("views.publish")[-1].params["view"]["blocks"])
    assert home.index(f"#{member} coredns") < home.index(f"#{other} coredns")
    assert "Kept for other open-source projects" in home


def test_a_reserve_refusal_reaches_the_reviewer(lab_slack: Slack) -> None:
    lab_slack.command(
        "request 14 c1.small.x86 ams1 6d project=coredns class=foundation "
        f'repo=https://github.com/coredns/coredns "a week of scale tests" key="{OWNER_KEY}"',
        OWNER,
    )
    lease_id = lease_id_in(lab_slack.replies()[-1])
    lab_slack.card_click(cards.APPROVE, lease_id, REVIEWER)
    assert "would eat into the 20% of the month kept for other open-source projects" in str(
        lab_slack.fake.calls()
    )
    assert lab_slack.lease(lease_id).state == "pending"
    assert lab_slack.audits("approve")[-1].outcome == "refused"
