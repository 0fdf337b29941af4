"""App Home: a person's leases with the buttons they can press, the lab's credit this month,
and for reviewers the requests waiting for them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.blocks.cards import decision_buttons
from bot.blocks.dms import lease_buttons
from bot.blocks.kit import (
    VIEW_BLOCK_LIMIT,
    Block,
    actions,
    context,
    divider,
    escape,
    fields,
    header,
    mrkdwn,
    section,
)
from commands.billing import format_cents
from commands.credit_report import CreditReport
from commands.facts import one_line
from commands.queue import QueueEntry, repo_words
from commands.reserve import reserve_words
from storage.models import Lease

MAX_LEASES = 20
MAX_PENDING = 15


def home_view(
    mine: list[Lease], report: CreditReport, pending: list[QueueEntry] | None, now: datetime
) -> dict[str, Any]:
    """`pending` is None for people who are not reviewers (they do not see the queue); for
    reviewers it is the queue in review order."""
    blocks = [header("Your leases"), *_mine(mine, now), divider(), *_credit(report)]
    if pending is not None:
        blocks += [divider(), header("Waiting for review"), *_pending(pending, now)]
    return {"type": "home", "blocks": blocks[:VIEW_BLOCK_LIMIT]}


def _mine(mine: list[Lease], now: datetime) -> list[Block]:
    if not mine:
        return [section("You have no leases yet. Ask for servers with `/lab request`.")]
    blocks: list[Block] = []
    for lease in mine[:MAX_LEASES]:
        blocks.append(section(mrkdwn(one_line(lease, now))))
        buttons = lease_buttons(lease.id, lease.state)
        if buttons:
            blocks.append(actions(f"home:{lease.id}", *buttons))
    return blocks


def _credit(report: CreditReport) -> list[Block]:
    lab = report.lab
    return [
        header(f"The lab's credit, {report.month}"),
        fields(
            ("Granted", format_cents(lab.granted)),
            ("Spent", format_cents(lab.spent)),
            ("Committed", format_cents(lab.committed)),
            ("Available", format_cents(lab.available)),
            ("Kept for other open-source projects", reserve_words(report.reserve)),
        ),
    ]


def _pending(pending: list[QueueEntry], now: datetime) -> list[Block]:
    if not pending:
        return [context("Nothing is waiting for a decision.")]
    blocks: list[Block] = []
    for entry in pending[:MAX_PENDING]:
        lease = entry.lease
        blocks.append(
            section(
                f"<@{lease.owner}>: {mrkdwn(entry.line(now))}\n_{escape(lease.purpose)}_\n"
                f"Open source: {mrkdwn(repo_words(lease))}"
            )
        )
        blocks.append(decision_buttons(f"pending:{lease.id}", str(lease.id)))
    return blocks
