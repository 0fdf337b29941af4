"""Lists at the lab's scale, through the real bolt App over HTTP: 200 requests waiting and 64
leases for one person. Every list shows everything or says how much it leaves out and how to
see it; following that way shows every item once, within Slack's limits; a page past the end,
a garbled page and a More click on a list that changed since get a sentence or the right page.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from bot.blocks import home
from bot.blocks.kit import SECTION_LIMIT
from commands.policy import Policy
from commands.queue import queue
from commands.request import cancel, request
from fakes.slack import FakeSlack
from storage.db import Database
from storage.models import Lease
from tests.bot.conftest import Slack, body_of, serve, settings_for
from tests.conftest import OTHER, OWNER, OWNER_KEY, REVIEWER, Clock, request_input

WAITING = 200
MINE = 64  # the reviewer's own requests among them
ANSWER_LIMIT = 4000
View = dict[str, Any]


@pytest.fixture
def crowded(fake: FakeSlack, db: Database, clock: Clock) -> Iterator[Slack]:
    """200 requests waiting, filed a minute apart: 136 from two people, then 64 of the
    reviewer's own. The first is filed by the use case; the rest are copies of its row (the
    use case files about ten a second, too slow to file 200 in every test)."""
    settings = settings_for(fake, policy=Policy(pending_per_user=WAITING))
    for slack in serve(fake, db, clock, settings):
        people = [OWNER, OTHER] * ((WAITING - MINE) // 2) + [REVIEWER] * MINE
        first = request(slack.ctx.lab, people[0], request_input(count=1), clock.now)
        with db.write() as session:
            filed = session.get(Lease, first.lease_id).model_dump(exclude={"id"})
            session.add_all(
                Lease(**{**filed, "owner": person, "created_at": clock.advance(minutes=1)})
                for person in people[1:]
            )
        slack.settle()
        slack.fake.reset()
        yield slack


def open_home(slack: Slack, user: str = REVIEWER) -> View:
    slack.sender.event({"type": "app_home_opened", "user": user, "tab": "home"})
    slack.settle()
    return published(slack)


def published(slack: Slack) -> View:
    call = slack.fake.calls("views.publish")[-1]
    assert call.ok, call.response
    return call.response["view"]


def buttons(view: View) -> dict[str, str]:
    """Every button on the view: action_id -> value."""
    return {
        element["action_id"]: element["value"]
        for block in view["blocks"]
        if block["type"] == "actions"
        for element in block["elements"]
    }


def more(view: View, section: str) -> str | None:
    """The value of the section's More button, if it has one."""
    return next(
        (
            element["value"]
            for block in view["blocks"]
            if block.get("block_id") == f"more:{section}"
            for element in block["elements"]
            if element["text"]["text"].startswith("More")
        ),
        None,
    )


def click_on_home(slack: Slack, view: View, value: str, user: str = REVIEWER) -> View:
    slack.click(home.MORE, value, user, view=view)
    return published(slack)


def listed(view: View, action: str) -> list[int]:
    return [int(a.split(":")[1]) for a in buttons(view) if a.startswith(action + ":")]


def within_limits(view: View) -> None:
    assert len(view["blocks"]) <= 100
    for block in view["blocks"]:
        texts = [block.get("text") or {}, *block.get("elements", []), *block.get("fields", [])]
        assert all(len(t.get("text", "")) <= SECTION_LIMIT for t in texts if isinstance(t, dict))


def context_texts(view: View) -> list[str]:
    return [b["elements"][0]["text"] for b in view["blocks"] if b["type"] == "context"]


def walk(slack: Slack, section: str, action: str) -> list[int]:
    """Follow the section's More buttons from the first page to the last."""
    view = open_home(slack)
    seen = listed(view, action)
    while (value := more(view, section)) is not None:
        view = click_on_home(slack, view, value)
        within_limits(view)
        seen += listed(view, action)
    return seen


def queue_order(slack: Slack) -> list[int]:
    return [entry.lease.id for entry in queue(slack.ctx.lab, slack.clock.now)]


def test_app_home_at_200_waiting_says_how_many_and_stays_within_slacks_limits(
    crowded: Slack,
) -> None:
    view = open_home(crowded)
    within_limits(view)
    shown = context_texts(view)
    assert f"Showing 1 to 20 of {MINE}." in shown
    assert f"Showing 1 to 15 of {WAITING}." in shown
    assert more(view, "pending") == f"pending:15:{queue_order(crowded)[14]}"
    assert more(view, "mine") is not None


def test_more_on_app_home_shows_every_waiting_request_once_in_review_order(
    crowded: Slack,
) -> None:
    assert walk(crowded, "pending", "lease_approve") == queue_order(crowded)


def test_more_on_app_home_shows_every_lease_of_the_person_once(crowded: Slack) -> None:
    mine = walk(crowded, "mine", "lease_cancel")
    assert len(mine) == MINE and len(set(mine)) == MINE
    assert mine == sorted(mine, reverse=True)  # the newest first


def test_a_click_on_a_later_page_keeps_the_reader_there(crowded: Slack) -> None:
    view = open_home(crowded)
    second = click_on_home(crowded, view, more(view, "pending"))
    assert "Showing 16 to 30 of 200." in context_texts(second)
    target = listed(second, "lease_approve")[0]
    crowded.click("lease_approve", str(target), REVIEWER, view=second)
    after = published(crowded)
    assert crowded.lease(target).state != "pending"
    assert listed(after, "lease_approve")[0] == queue_order(crowded)[15]  # the next one moved up
    assert "This list changed" not in " ".join(context_texts(after))


def test_a_stale_more_click_gets_the_right_page_and_says_the_list_changed(
    crowded: Slack,
) -> None:
    view = open_home(crowded)
    value = more(view, "pending")
    order = queue_order(crowded)
    for lease_id in order[10:15]:  # the page's last request, the cursor, is decided since
        assert cancel(
            crowded.ctx.lab, crowded.lease(lease_id).owner, lease_id, crowded.clock.now
        ).ok
    stale = click_on_home(crowded, view, value)
    assert listed(stale, "lease_approve")[0] == queue_order(crowded)[15]
    assert any(t.startswith("This list changed") for t in context_texts(stale))

    filed = request(crowded.ctx.lab, OTHER, request_input(count=1), crowded.clock.now)
    assert filed.ok  # a new request joins the end of its class
    resumed = click_on_home(crowded, view, f"pending:15:{order[20]}")
    assert listed(resumed, "lease_approve")[0] == order[21]

    past_the_end = click_on_home(crowded, view, "pending:900:")
    now = queue_order(crowded)
    assert listed(past_the_end, "lease_approve") == now[(len(now) - 1) // 15 * 15 :]
    assert any(t.startswith("This list changed") for t in context_texts(past_the_end))


def test_a_garbled_more_button_gets_a_sentence_and_the_first_page(crowded: Slack) -> None:
    view = open_home(crowded)
    second = click_on_home(crowded, view, more(view, "pending"))
    answer = crowded.click(home.MORE, "pending:many:", REVIEWER, view=second)
    assert answer.status_code == 200
    first = published(crowded)
    assert "Showing 1 to 15 of 200." in context_texts(first)
    dm = crowded.dms(REVIEWER)[-1]["text"]
    assert "which is not a place in a list" in dm


def pages_of(slack: Slack, command: str, user: str) -> list[str]:
    """Every page of an answer, following each page's footer to the next."""
    slack.command(command, user)
    answers = [slack.replies()[-1]]
    while found := re.search(r"`(/lab [^`]+)` shows the next page", answers[-1]):
        slack.command(found[1].removeprefix("/lab "), user)
        answers.append(slack.replies()[-1])
    return answers


def lease_ids(answers: list[str]) -> list[int]:
    return [int(n) for a in answers for n in re.findall(r"^(?:\d+\. \[[^\]]*\] )?#(\d+) ", a, re.M)]


def test_lab_queue_pages_through_200_requests_each_once(crowded: Slack) -> None:
    answers = pages_of(crowded, "queue", REVIEWER)
    assert len(answers) > 1 and all(len(a) <= ANSWER_LIMIT for a in answers)
    assert answers[0].startswith("Waiting for review: 200, in review order")
    assert "Showing 1 to 20 of 200 (page 1 of " in answers[0]
    assert "That is the last page; `/lab queue` shows the first." in answers[-1]
    assert lease_ids(answers) == queue_order(crowded)


def test_lab_list_pages_through_64_leases_each_once(crowded: Slack) -> None:
    answers = pages_of(crowded, "list", REVIEWER)
    assert len(answers) == 4 and all(len(a) <= ANSWER_LIMIT for a in answers)
    assert answers[0].startswith(f"Your leases ({MINE}):")
    ids = lease_ids(answers)
    assert len(ids) == MINE and len(set(ids)) == MINE

    others = pages_of(crowded, f"list {OWNER}", REVIEWER)
    assert others[0].startswith(f"<@{OWNER}>'s leases (68):")
    assert f"`/lab list {OWNER} 2` shows the next page" in others[0]
    assert len(set(lease_ids(others))) == 68


def test_pages_past_the_end_and_garbled_pages_get_a_sentence(crowded: Slack) -> None:
    crowded.command("queue 99", REVIEWER)
    assert crowded.replies()[-1] == (
        "There is no page 99: the requests waiting fit on 10 pages; `/lab queue 10` shows the last."
    )
    crowded.command("list 5", REVIEWER)
    assert "There is no page 5: your leases fit on 4 pages" in crowded.replies()[-1]
    answer = body_of(crowded.command("queue next", REVIEWER))
    assert "'next' is not a page number (like 2)" in answer["text"]
    crowded.command(f"list {OTHER} 7", REVIEWER)
    assert crowded.replies()[-1] == (
        f"There is no page 7: <@{OTHER}>'s leases fit on 4 pages; `/lab list {OTHER} 4` shows "
        "the last."
    )
    assert crowded.audits("queue")[-1].outcome == "refused"


def test_a_short_list_shows_everything_and_says_nothing_about_pages(slack: Slack) -> None:
    assert request(slack.ctx.lab, OWNER, request_input(), slack.clock.now).ok
    slack.command("list", OWNER)
    answer = slack.replies()[-1]
    assert answer.startswith("Your leases (1):") and "Showing" not in answer
    slack.command("list 2", OWNER)
    assert slack.replies()[-1] == (
        "There is no page 2: your leases fit on one page, which `/lab list` shows."
    )
    view = open_home(slack, OWNER)
    assert not [b for b in view["blocks"] if str(b.get("block_id", "")).startswith("more:")]
    assert not [t for t in context_texts(view) if t.startswith("Showing")]


def test_a_card_says_how_many_earlier_leases_it_leaves_out(crowded: Slack) -> None:
    crowded.command(
        "request 1 c1.small.x86 ams1 1h project=coredns repo=https://github.com/coredns/coredns "
        f'"one more" key="{OWNER_KEY}"',
        REVIEWER,
    )
    [card] = [c for c in crowded.fake.calls("chat.postMessage") if "review:" in str(c.params)]
    past = next(
        f["text"] for b in card.params["blocks"] for f in b.get("fields", []) if "Past" in f["text"]
    )
    assert past.count("(pending)") == 5
    assert f"and {MINE - 5} more: `/lab list {REVIEWER}` lists them all" in past
