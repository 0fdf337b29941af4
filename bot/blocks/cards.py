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
    option,
    plain,
    section,
)
from commands.notices import Message

APPROVE = "lease_approve"
DENY = "lease_deny"
EXTENSION_APPROVE = "extension_approve"
EXTENSION_DENY = "extension_deny"
DONOR = "lease_donor"  # the card's menu of the donors a request may be billed to

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
            ("Capacity calendar", escape(str(data.get("calendar") or "no limit set"))),
            ("Past leases", ", ".join(history) or "none"),
        ),
        *_donor(data),
        fields(
            ("Who is asking", str(data.get("applicant", "other open-source project"))),
            ("Place in queue", str(data.get("place", "-"))),
            ("Open source", str(data.get("repo_check", "check pending"))),
            ("Write-ups", ", ".join(data.get("writeups") or []) or "no earlier leases"),
        ),
        *_flag(data),
        *_booking(data),
        section(f"*Why:* {escape(str(data.get('purpose', '')))}"),
        decision_buttons(f"review:{lease_id}", lease_id, menu=_donor_menu(lease_id, data)),
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


def decision_buttons(
    block_id: str,
    target: str,
    approve: str = APPROVE,
    deny: str = DENY,
    menu: dict[str, Any] | None = None,
) -> Block:
    """Approve and Deny, on a card or on a reviewer's App Home (and a menu beside them)."""
    return actions(
        block_id,
        button("Approve", approve, target, "primary"),
        button("Deny…", deny, target, "danger"),
        *([menu] if menu else []),
    )


def donor_pick(value: str) -> tuple[int, str] | None:
    """The request and the donor a choice in the card's donor menu carries (`7:cncf`), or None
    when the value is not one (a forged or stale payload)."""
    target, _, donor = value.partition(":")
    lease_id = number(target)
    return (lease_id, donor) if lease_id is not None and donor else None


def _donor(data: dict[str, Any]) -> list[Block]:
    """Who pays for the request, for which months, and why it was chosen; what stopped the
    other donors. Nothing on a card from before donors."""
    if not data.get("donor"):
        return []
    months = ", ".join(data.get("donor_months") or [])
    blocks = [
        fields(
            ("Donor", f"{escape(str(data['donor']))} ({months or '-'})"),
            ("Why this donor", mrkdwn(str(data.get("donor_why") or "-"))),
        )
    ]
    stops = data.get("donor_stops") or []
    if stops:
        blocks.append(context(f"Other donors: {mrkdwn('; '.join(map(str, stops)))}"))
    return blocks


def _donor_menu(lease_id: str, data: dict[str, Any]) -> dict[str, Any] | None:
    """A static select of the donors whose terms allow the request, the one that pays shown;
    none when there is no other to pick."""
    names = [str(name) for name in data.get("donors") or []]
    if len(names) < 2 and data.get("donor") in names:
        return None
    options = [option(name, f"{lease_id}:{name}") for name in names[:100]]
    if not options:
        return None
    menu: dict[str, Any] = {
        "type": "static_select",
        "action_id": f"{DONOR}:{lease_id}",
        "placeholder": plain("Bill another donor"),
        "options": options,
    }
    chosen = [o for o in options if o["value"] == f"{lease_id}:{data.get('donor')}"]
    if chosen:
        menu["initial_option"] = chosen[0]
    return menu


def decided_card(message: Message, summary: str | None) -> list[Block]:
    """What the card becomes: what was asked (when we still know it) and who decided."""
    blocks = [section(mrkdwn(summary))] if summary else []
    return [*blocks, context(f":white_check_mark: {mrkdwn(message.text)}")]


def _flag(data: dict[str, Any]) -> list[Block]:
    note = data.get("class_note")
    return [context(f":warning: Flagged for reviewers: {escape(str(note))}")] if note else []


def _booking(data: dict[str, Any]) -> list[Block]:
    """A booking's start (in each reviewer's own zone) and, when it would follow the project's
    earlier lease of the same plan, that flag."""
    blocks = []
    if data.get("book_start"):
        blocks.append(context(f":calendar: Booked ahead: starts {mrkdwn(str(data['book_start']))}"))
    if data.get("back_to_back"):
        blocks.append(
            context(f":warning: Flagged for reviewers: {mrkdwn(str(data['back_to_back']))}")
        )
    return blocks


def _servers(data: dict[str, Any]) -> str:
    return (
        f"{data.get('count', '?')} x {data.get('plan', '?')} in {data.get('metro', '?')} "
        f"for {data.get('duration', '?')} ({data.get('os', '')})"
    )


def _capacity(capacity: bool | None) -> str:
    """What the provider reports for now (Packet's `/capacity`); "unknown" when it cannot say."""
    words = {True: "available", False: "the provider says it is short"}
    return f"provider now: {words.get(capacity, 'unknown')}"
