"""A busy review channel against Slack's rate limits: the real App over HTTP, the fake Slack
answering 429 beyond Slack's pace on the test's clock, and the outbox delivering as the courier
does, a pass a second."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from itertools import pairwise

import pytest

from commands.notices import deliver, undelivered
from fakes.slack import FakeSlack
from fakes.slack_rates import Limit
from tests.bot.conftest import REVIEW_CHANNEL, Slack, file_request
from tests.bot.test_large_leases import CAROL, big_lease
from tests.conftest import OWNER, Clock

BURST = 50
PEOPLE = [f"U0P{i:02d}" for i in range(BURST)]


@pytest.fixture
def fake(clock: Clock) -> Iterator[FakeSlack]:
    """Slack with its rate limits on, timed by the test's clock."""
    with FakeSlack(clock=lambda: clock.now.timestamp()) as server:
        server.limit_rates()
        yield server


def courier(slack: Slack, most: timedelta = timedelta(minutes=5)) -> datetime:
    """Deliver a pass a second until nothing waits; returns when the last notice went."""
    lab, started = slack.ctx.lab, slack.clock.now
    while undelivered(slack.db):
        assert slack.clock.now - started < most, "the outbox stopped delivering"
        deliver(slack.db, lab.notifier, slack.clock.advance(seconds=1), owner=lab.replica)
    return slack.clock.now


def cards_in_review_channel(slack: Slack) -> list[int]:
    """The lease of each review card the channel shows, top to bottom."""
    return [
        int(block["block_id"].split(":")[1])
        for params in slack.fake.messages(REVIEW_CHANNEL)
        for block in params.get("blocks") or []
        if str(block.get("block_id", "")).startswith("review:")
    ]


def refused(fake: FakeSlack) -> int:
    return len([c for c in fake.calls() if c.status == 429])


def test_a_burst_of_requests_yields_every_card_once_in_order_at_slacks_pace(slack: Slack) -> None:
    start = slack.clock.now
    filed = [file_request(slack, person) for person in PEOPLE]  # all within the same second
    assert len(cards_in_review_channel(slack)) < 5, "the rest wait for the channel's pace"

    done = courier(slack)

    assert cards_in_review_channel(slack) == filed
    posts = [c for c in slack.fake.calls("chat.postMessage") if c.ok]
    review = [c.at for c in posts if c.params["channel"] == REVIEW_CHANNEL]
    assert all(b - a <= 1.0 + 1e-6 for a, b in pairwise(review)), "no slower than Slack allows"
    assert review[-1] - review[0] <= BURST, "about one a second, no slower"
    for person in PEOPLE:
        [received] = slack.dms(person)
        assert f"Request #{filed[PEOPLE.index(person)]} received" in received["text"]
    assert refused(slack.fake) == 0, "the outbox stays inside Slack's rate"
    # 50 DMs to open at Tier 3 (50 a minute) is the slowest lane of the burst.
    assert done - start <= timedelta(seconds=75)


def test_a_stricter_slack_costs_a_few_429s_and_no_order(slack: Slack) -> None:
    slack.fake.limit_rates(chat_postMessage=Limit(1.0, 1, per="channel"))
    filed = [file_request(slack, person) for person in PEOPLE[:20]]

    courier(slack)

    assert cards_in_review_channel(slack) == filed
    assert all(len(slack.dms(person)) == 1 for person in PEOPLE[:20])
    assert 1 <= refused(slack.fake) <= 3, "each 429 pauses the channel; no storm of retries"


def test_a_throttled_upload_resumes_without_uploading_a_file_twice(slack: Slack) -> None:
    """A 429 in the middle of a lease's files holds that upload (and the uploads behind it)
    until Slack has room; the next attempt uploads only the files the first did not, and each
    person's DM gets the three files once."""
    slack.fake.limit_rates(files_getUploadURLExternal=Limit(30.0, 2))
    big_lease(slack, count=12)

    courier(slack, most=timedelta(minutes=10))

    urls = slack.fake.calls("files.getUploadURLExternal")
    assert [c for c in urls if c.status == 429]
    assert len([c for c in urls if c.status == 200]) == 6  # three files for each of two people
    for person in (OWNER, CAROL):
        shared = slack.fake.files(slack.fake.dm_channel(person))
        assert sorted(f.filename.split("-", 2)[-1] for f in shared) == [
            "inventory.ini",
            "servers.csv",
            "ssh_config",
        ]
    assert len(slack.fake.calls("files.completeUploadExternal")) == 2
    assert slack.fake.calls("files.info")  # the resumed upload asked before sharing
