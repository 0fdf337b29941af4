"""Reviewer cards in the review channel: a request or an extension, with Approve and Deny, and
the same card after the decision (buttons gone, who decided and when)."""

from __future__ import annotations

from typing import Any

from bot.blocks.kit import (
    Block,
    actions,
    button,
    context,
    escape,
    fields,
    header,
    mrkdwn,
    number,
    section,
)
from commands.notices import Message

APPROVE = "lease_approve"
DENY = "lease_deny"
EXTENSION_APPROVE = "extension_approve"
EXTENSION_DENY = "extension_deny"

target_of = number  # every card button carries the lease (or extension) number as its value


def review_card(message: Message) -> list[Block]:
    data = message.data
    lease_id = str(message.lease_id)
    left = data.get("left_after") or {}
    history = data.get("history") or []
    return [
        header(f"Request #{lease_id}: {data.get('project', '')}"[:150]),
        section(mrkdwn(message.text)),
        fields(
            ("Requester", f"<@{data.get('owner', '')}>"),
            ("Project", escape(str(data.get("project", "")))),
            ("Repository", escape(str(data.get("repo_url", "")))),
            ("Servers", _servers(data)),
            ("Cost", f"{data.get('estimate', '?')} ({data.get('hourly', '?')}/h each)"),
            ("Left this month after it", ", ".join(f"{m}: {v}" for m, v in left.items()) or "-"),
            ("Capacity", _capacity(data.get("capacity"))),
            ("Past leases", ", ".join(history) or "none"),
        ),
        fields(
            ("Who is asking", str(data.get("applicant", "other open-source project"))),
            ("Place in queue", str(data.get("place", "-"))),
            ("Open source", str(data.get("repo_check", "check pending"))),
            ("Write-ups", ", ".join(data.get("writeups") or []) or "no earlier leases"),
        ),
        *_flag(data),
        section(f"*Why:* {escape(str(data.get('purpose', '')))}"),
        decision_buttons(f"review:{lease_id}", lease_id),
    ]


def extension_card(message: Message) -> list[Block]:
    extension_id = str(message.data.get("extension_id", ""))
    return [
        header(f"Extension of lease #{message.lease_id}"),
        section(mrkdwn(message.text)),
        decision_buttons(
            f"extension:{extension_id}", extension_id, EXTENSION_APPROVE, EXTENSION_DENY
        ),
    ]


def decision_buttons(block_id: str, target: str, approve: str = APPROVE, deny: str = DENY) -> Block:
    """Approve and Deny, on a card or on a reviewer's App Home."""
    return actions(
        block_id,
        button("Approve", approve, target, "primary"),
        button("Deny…", deny, target, "danger"),
    )


def decided_card(message: Message, summary: str | None) -> list[Block]:
    """What the card becomes: what was asked (when we still know it) and who decided."""
    blocks = [section(mrkdwn(summary))] if summary else []
    return [*blocks, context(f":white_check_mark: {mrkdwn(message.text)}")]


def _flag(data: dict[str, Any]) -> list[Block]:
    note = data.get("class_note")
    return [context(f":warning: Flagged for reviewers: {escape(str(note))}")] if note else []


def _servers(data: dict[str, Any]) -> str:
    return (
        f"{data.get('count', '?')} x {data.get('plan', '?')} in {data.get('metro', '?')} "
        f"for {data.get('duration', '?')} ({data.get('os', '')})"
    )


def _capacity(capacity: bool | None) -> str:
    return {True: "available", False: "the provider says it is short"}.get(capacity, "unknown")
