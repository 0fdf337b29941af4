"""Who may do what, as one table: every verb, button and form x every role, sent through
Slack exactly as Slack sends it. An allowed action does its work; a refused one answers with
its sentence and leaves the database as it was (but for the audit entry)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from sqlmodel import select

from bot.blocks import cards, dms, modals
from commands.coowners import share
from commands.extend import extend
from commands.policy import Policy
from commands.sweep import sweep
from fakes.slack import FakeSlack
from fakes.slack_sender import field as text_field
from storage.db import Database
from storage.models import PendingExtension
from tests.bot.conftest import Slack, serve, settings_for
from tests.bot.test_commands import request_values
from tests.commands.helpers import approved, file, snapshot
from tests.conftest import ADMIN, OTHER, OWNER, OWNER_KEY, REVIEWER, Clock

CO_OWNER = "U0COOWNER"  # every lease in this table is shared with them
# role -> (the lease's owner, who acts)
ROLES = {
    "owner": (OWNER, OWNER),
    "co-owner": (OWNER, CO_OWNER),
    "other user": (OWNER, OTHER),
    "reviewer": (OWNER, REVIEWER),
    "reviewer who is the owner": (REVIEWER, REVIEWER),
    "admin": (OWNER, ADMIN),
}
NOT_REVIEWERS = ("owner", "co-owner", "other user")
NOT_ADMINS = ("owner", "co-owner", "other user", "reviewer", "reviewer who is the owner")
STRANGERS = ("other user", "reviewer")
NOT_OWNERS = ("co-owner", *STRANGERS)


def owner_only(verb: str) -> str:
    return f"only its owner or an admin can {verb} it"


def co_owners_too(verb: str) -> str:
    return f"only its owner, a co-owner or an admin can {verb} it"


EXTENDERS = "only its owner, a co-owner, a reviewer or an admin can extend it"


SELF = "yourself, so another reviewer must approve it"
REVIEWERS_DECIDE = "Only reviewers can decide extensions."

Send = Callable[[Slack, str, int], object]
PICKED = {"type": "multi_users_select", "selected_users": ["U0NEW"]}


@dataclass(frozen=True)
class Action:
    """`needs` is what must exist first: a pending request, an active lease, or a pending
    extension of an active lease; `refused` maps each refused role to its sentence."""

    name: str
    needs: str
    send: Send
    refused: dict[str, str] = field(default_factory=dict)
    changes: bool = True  # an allowed action changes the database


def command(text: str) -> Send:
    return lambda slack, user, target: slack.command(text.format(id=target), user)


def click(action: str, value: str = "{id}") -> Send:
    return lambda slack, user, target: slack.click(action, value.format(id=target), user)


def form(callback: str, values: dict, metadata: str = "") -> Send:
    def send(slack: Slack, user: str, target: int) -> object:
        answer = slack.sender.view_submission(
            callback, values, user, private_metadata=metadata.format(id=target)
        )
        slack.settle()
        return answer

    return send


def every(roles: tuple[str, ...], sentence: str) -> dict[str, str]:
    return dict.fromkeys(roles, sentence)


ACTIONS = [
    Action(
        "/lab request",
        "nothing",
        command(
            'request 1 c1.small.x86 ams1 24h project=p repo=https://github.com/p/p "why" '
            f'key="{OWNER_KEY}"'
        ),
    ),
    Action("request form", "nothing", form(modals.REQUEST, request_values())),
    Action("/lab list", "active", command("list"), changes=False),
    Action("/lab show", "active", command("show {id}"), changes=False),
    Action("/lab credit", "active", command("credit"), changes=False),
    Action("/lab plans", "nothing", command("plans"), changes=False),
    Action("/lab extend", "active", command("extend {id} 1d"), {"other user": EXTENDERS}),
    Action("Extend button", "active", click(dms.EXTEND, "{id}-1d"), {"other user": EXTENDERS}),
    Action(
        "/lab release",
        "active",
        command("release {id}"),
        every(STRANGERS, co_owners_too("release")),
    ),
    Action(
        "Release button", "active", click(dms.RELEASE), every(STRANGERS, co_owners_too("release"))
    ),
    Action(
        "/lab cancel", "pending", command("cancel {id}"), every(NOT_OWNERS, owner_only("cancel"))
    ),
    Action("Cancel button", "pending", click(dms.CANCEL), every(NOT_OWNERS, owner_only("cancel"))),
    Action(
        "/lab share", "active", command("share {id} U0NEW"), every(NOT_OWNERS, owner_only("share"))
    ),
    Action("Add co-owners button (opens the form)", "active", click(dms.SHARE), changes=False),
    Action(
        "co-owners form",
        "active",
        form(modals.SHARE, {"co_owners": {"value": PICKED}}, "{id}"),
        every(NOT_OWNERS, owner_only("share")),
    ),
    Action(
        "/lab unshare (the co-owner)",
        "active",
        command(f"unshare {{id}} <@{CO_OWNER}>"),
        every(STRANGERS, owner_only("unshare")),
    ),
    Action("/lab keys", "nothing", command("keys"), changes=False),
    Action("/lab keys add", "nothing", command(f"keys add {OWNER_KEY}")),
    Action(
        "/lab approve",
        "pending",
        command("approve {id}"),
        {**every(NOT_REVIEWERS, "Only reviewers can approve"), "reviewer who is the owner": SELF},
    ),
    Action(
        "Approve button",
        "pending",
        click(cards.APPROVE),
        {**every(NOT_REVIEWERS, "Only reviewers can approve"), "reviewer who is the owner": SELF},
    ),
    Action(
        "/lab deny",
        "pending",
        command("deny {id} not now"),
        every(NOT_REVIEWERS, "Only reviewers can deny"),
    ),
    Action(
        "Deny button (opens the reason form)",
        "pending",
        click(cards.DENY),
        every(NOT_REVIEWERS, "Only reviewers can deny"),
        changes=False,
    ),
    Action(
        "deny form",
        "pending",
        form(modals.DENY, {"reason": {"value": text_field("not now")}}, "lease:{id}"),
        every(NOT_REVIEWERS, "Only reviewers can deny"),
    ),
    Action(
        "/lab provision",
        "pending",
        command("provision {id}"),
        every(NOT_ADMINS, "Only admins can provision by hand."),
        changes=False,
    ),
    Action(
        "extension Approve button",
        "extension",
        click(cards.EXTENSION_APPROVE),
        {**every(NOT_REVIEWERS, REVIEWERS_DECIDE), "reviewer who is the owner": SELF},
    ),
    Action(
        "extension Deny button (opens the reason form)",
        "extension",
        click(cards.EXTENSION_DENY),
        every(NOT_REVIEWERS, REVIEWERS_DECIDE),
        changes=False,
    ),
    Action(
        "extension deny form",
        "extension",
        form(modals.DENY, {"reason": {"value": text_field("not now")}}, "extension:{id}"),
        every(NOT_REVIEWERS, REVIEWERS_DECIDE),
    ),
    Action(
        "write-up form",
        "pending",
        form(
            modals.WRITEUP, {"url": {"value": text_field("https://blog.example.org/run")}}, "{id}"
        ),
        every(
            ("co-owner", "other user", "reviewer", "admin"),
            "Only the lease's owner can add its write-up.",
        ),
    ),
]


def prepare(slack: Slack, needs: str, owner: str) -> int:
    lab, clock = slack.ctx.lab, slack.clock
    if needs == "nothing":
        return 0
    if needs == "pending":
        lease_id = file(lab, clock, actor=owner)
        share(lab, owner, lease_id, [CO_OWNER], clock.now)
        return lease_id
    lease_id = approved(lab, clock, actor=owner)
    share(lab, owner, lease_id, [CO_OWNER], clock.now)
    sweep(lab, clock.advance(minutes=3))
    if needs == "active":
        return lease_id
    extend(lab, owner, lease_id, timedelta(days=40), clock.now)
    with slack.db.read() as session:
        return session.exec(
            select(PendingExtension.id).where(PendingExtension.lease_id == lease_id)
        ).one()


def answers(slack: Slack) -> str:
    """Everything labbot said to anyone after the action: ephemeral replies and DMs."""
    said = [
        str(c.params.get("text", ""))
        for c in slack.fake.calls()
        if c.method in ("response_url", "chat.postMessage", "chat.postEphemeral")
    ]
    return "\n".join(said)


@pytest.fixture
def lab_slack(fake: FakeSlack, db: Database, clock: Clock) -> Iterator[Slack]:
    """One served App for a whole row of the table (see `attempt` for the leases it acts on)."""
    yield from serve(fake, db, clock, settings_for(fake, policy=Policy(pending_per_user=100)))


@pytest.mark.parametrize("role", ROLES)
def test_authorization_matrix(lab_slack: Slack, role: str) -> None:
    untouched: dict[str, int] = {}
    failures = [
        f"{action.name}: {problem}"
        for action in ACTIONS
        if (problem := attempt(lab_slack, action, role, untouched))
    ]
    assert not failures, "\n".join(failures)


def attempt(slack: Slack, action: Action, role: str, untouched: dict[str, int]) -> str | None:
    """What went wrong when `role` tried `action`; None when it went as the table says.

    The action gets a lease (or extension) in the state it needs, shared with the co-owner:
    a new one, or the one an earlier action of the row left exactly as it found it (every row
    but the audit log's the same: a refusal, or a look that changes nothing), which is what a
    new one would be, without the approval and the sweep that make one (`untouched`, by need).
    """
    owner, actor = ROLES[role]
    target = untouched.pop(action.needs, None) or prepare(slack, action.needs, owner)
    slack.settle()
    slack.fake.reset()
    before = snapshot(slack.db)
    answer = action.send(slack, actor, target)
    said = answers(slack)
    after = snapshot(slack.db)
    if after == before:
        untouched[action.needs] = target
    if answer.status_code != 200:
        return f"HTTP {answer.status_code}"
    if role in action.refused:
        if action.refused[role] not in said:
            return f"not refused with '{action.refused[role]}'; said {said!r}"
        return "refused, but the database changed" if after != before else None
    if any(sentence in said for sentence in {*action.refused.values(), SELF}):
        return f"refused: {said!r}"
    if action.changes and after == before:
        return f"allowed, but nothing changed; said {said!r}"
    if not action.changes and not (said or slack.fake.calls("views.open")):
        return "allowed, but nothing was shown"
    return None
