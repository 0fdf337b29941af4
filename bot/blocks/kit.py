"""The primitives every surface is built from, and the two rules every one of them obeys:
user text is escaped (no @channel, no spoofed links), and Slack's size limits are respected
(Slack rejects an oversized message outright, which would lose the notice)."""

from __future__ import annotations

import re
from typing import Any

Block = dict[str, Any]

SECTION_LIMIT = 3000
MESSAGE_TEXT_LIMIT = 4000
MESSAGE_BLOCK_LIMIT = 50
VIEW_BLOCK_LIMIT = 100
BUTTON_TEXT_LIMIT = 75
OPTION_TEXT_LIMIT = 75

# Our own user mentions survive escaping; broadcasts and links never do.
_ESCAPED_MENTION = re.compile(r"&lt;@([UW][A-Z0-9]{2,})&gt;")


def escape(text: str) -> str:
    """Escape what Slack would parse as markup (&, <, >), then restore plain user mentions
    (`<@U123>`), which the use cases write on purpose."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _ESCAPED_MENTION.sub(r"<@\1>", escaped)


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plain(text: str, limit: int = SECTION_LIMIT) -> dict[str, Any]:
    return {"type": "plain_text", "text": truncate(text, limit), "emoji": True}


def section(text: str) -> Block:
    """A mrkdwn section of text that is already escaped (or is ours)."""
    return {"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, SECTION_LIMIT)}}


def fields(*pairs: tuple[str, str]) -> Block:
    """Up to ten labelled facts side by side; values are user text and get escaped."""
    return {
        "type": "section",
        "fields": [
            {"type": "mrkdwn", "text": truncate(f"*{label}*\n{escape(value)}", 2000)}
            for label, value in pairs[:10]
        ],
    }


def context(text: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(text, 3000)}]}


def header(text: str) -> Block:
    return {"type": "header", "text": plain(text, 150)}


def divider() -> Block:
    return {"type": "divider"}


def button(text: str, action: str, value: str, style: str | None = None) -> dict[str, Any]:
    """A button whose action_id is `action:value`: Slack wants action ids unique in a message
    or view, and App Home shows the same buttons for several leases."""
    element: dict[str, Any] = {
        "type": "button",
        "text": plain(text, BUTTON_TEXT_LIMIT),
        "action_id": f"{action}:{value}",
        "value": value,
    }
    if style:
        element["style"] = style
    return element


def actions(block_id: str, *buttons: dict[str, Any]) -> Block:
    return {"type": "actions", "block_id": block_id, "elements": list(buttons)}


def message(text: str, blocks: list[Block]) -> dict[str, Any]:
    """chat.postMessage / chat.update arguments: escaped fallback text within limits."""
    return {
        "text": truncate(escape(text), MESSAGE_TEXT_LIMIT),
        "blocks": blocks[:MESSAGE_BLOCK_LIMIT],
    }


def ephemeral(text: str) -> dict[str, Any]:
    """A reply only the person who asked can see, escaped like every other message."""
    return {"response_type": "ephemeral", "text": truncate(escape(text), MESSAGE_TEXT_LIMIT)}


def matching(action: str) -> re.Pattern[str]:
    """The action_id pattern a listener registers for the buttons `button(.., action, ..)` makes."""
    return re.compile(rf"^{re.escape(action)}(:.*)?$")


def number(value: str | None) -> int | None:
    """A button value that should hold a lease or extension number; None when it does not
    (a forged or stale payload), so the listener can say so instead of failing."""
    text = (value or "").strip()
    if text.isascii() and text.isdigit() and 0 < len(text) <= 12:
        return int(text)
    return None
