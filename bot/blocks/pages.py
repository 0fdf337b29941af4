"""`/lab show`'s answer: a lease and one page of its servers, with *Previous* and *Next
servers* buttons that put the neighbouring page in the answer's place."""

from __future__ import annotations

from bot.blocks.kit import (
    MESSAGE_BLOCK_LIMIT,
    MESSAGE_CHARS_BUDGET,
    Block,
    actions,
    button,
    mrkdwn,
    number,
    packed,
)
from commands.serverpages import Page, Shown

PAGE = "servers_page"


def page_blocks(shown: Shown) -> list[Block]:
    lines = [mrkdwn(line) for line in shown.outcome.message.split("\n")]
    sections, _ = packed(lines, MESSAGE_CHARS_BUDGET, MESSAGE_BLOCK_LIMIT - 1)
    page = shown.page
    if page is None or page.pages == 1:
        return sections
    turns = [
        *([_turn("Previous", page, page.number - 1)] if page.number > 1 else []),
        *([_turn("Next servers", page, page.number + 1)] if page.number < page.pages else []),
    ]
    return [*sections, actions(f"servers:{page.lease_id}", *turns)]


def _turn(label: str, page: Page, to: int) -> dict:
    """A button to page `to`, carrying how many servers this page counted, so that a click
    after the lease changed can say so."""
    return button(label, PAGE, f"{page.lease_id}-{to}-{page.total}")


def page_target(value: str | None) -> tuple[int, int, int] | None:
    """`12-3-500` -> (lease 12, page 3, 500 servers when the button was made); None for
    anything a page button could not have sent."""
    parts = (value or "").split("-")
    if len(parts) != 3:
        return None
    lease_id, page = number(parts[0]), number(parts[1])
    seen = 0 if parts[2] == "0" else number(parts[2])
    if lease_id is None or page is None or seen is None:
        return None
    return lease_id, page, seen
