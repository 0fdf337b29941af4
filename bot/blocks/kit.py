"""The primitives every surface is built from, and the two rules every one of them obeys:
user text is inert (no @channel, no mentions, no spoofed links), and Slack's size limits are
respected (Slack rejects an oversized message outright, which would lose the notice).

Two kinds of text reach Slack: a person's own words (a purpose, a repository URL), which
`escape` renders inert whole, and the sentences the use cases write, which `mrkdwn` renders
keeping the `<@U…>` mentions and the `<!date^…>` times (commands.facts.when) the use cases put
there on purpose; whatever user text those sentences carry, the use case has already quoted
(commands.facts.quoted), and any other `<!…>` is escaped."""

from __future__ import annotations

import re
from typing import Any

from commands.facts import DATE_TOKEN, is_our_date

Block = dict[str, Any]

SECTION_LIMIT = 3000
MESSAGE_TEXT_LIMIT = 4000
MESSAGE_BLOCK_LIMIT = 50
VIEW_BLOCK_LIMIT = 100
BUTTON_TEXT_LIMIT = 75
# Slack refuses a message whose blocks hold about 12,000 characters of text or more
# (msg_blocks_too_long), far below 50 sections of 3,000: labbot fills a message up to this.
MESSAGE_CHARS_BUDGET = 11_000
OPTION_TEXT_LIMIT = 75

_LIVE = re.compile(rf"<@[UW][A-Z0-9]{{2,}}>|{DATE_TOKEN.pattern}")
_BARE_AMPERSAND = re.compile(r"&(?!(?:amp|lt|gt);)")


def escape(text: str) -> str:
    """A person's words, inert: everything Slack would parse as markup (&, <, >) escaped."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mrkdwn(sentence: str) -> str:
    """A use case's sentence: its user mentions (`<@U123>`) and the times labbot wrote
    (`<!date^…>`) stay live; any other markup is escaped, and text the use case already
    escaped is not escaped twice."""
    parts, done = [], 0
    for live in _LIVE.finditer(sentence):
        if live["unix"] is not None and not is_our_date(live):
            continue
        parts += [_escape_rest(sentence[done : live.start()]), live[0]]
        done = live.end()
    return "".join([*parts, _escape_rest(sentence[done:])])


def _escape_rest(text: str) -> str:
    return _BARE_AMPERSAND.sub("&amp;", text).replace("<", "&lt;").replace(">", "&gt;")


def truncate(text: str, limit: int) -> str:
    """At most `limit` characters, ending in "…" when cut; never inside a `<…>` (a mention or
    a time), which Slack would show as broken markup."""
    if len(text) <= limit:
        return text
    cut = limit - 1
    opened = text.rfind("<", 0, cut)
    if opened > text.rfind(">", 0, cut):
        cut = opened
    return text[:cut] + "…"


def plain(text: str, limit: int = SECTION_LIMIT) -> dict[str, Any]:
    return {"type": "plain_text", "text": truncate(text, limit), "emoji": True}


def section(text: str) -> Block:
    """A mrkdwn section of text that is already escaped (or is ours)."""
    return {"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, SECTION_LIMIT)}}


def packed(lines: list[str], chars: int, blocks: int) -> tuple[list[Block], int]:
    """`lines` (already escaped) as mrkdwn sections of at most SECTION_LIMIT characters each,
    as many as fit in `chars` characters and `blocks` blocks; with how many lines went in."""
    sections: list[list[str]] = []
    size = used = 0
    for line in lines:
        cost = len(line) + 1
        if used + cost > chars:
            break
        if not sections or size + cost > SECTION_LIMIT:
            if len(sections) == blocks:
                break
            sections.append([])
            size = 0
        sections[-1].append(line)
        size += cost
        used += cost
    return [section("\n".join(lines)) for lines in sections], sum(map(len, sections))


def block_chars(blocks: list[Block]) -> int:
    """The characters of text in `blocks`, as Slack counts them against a message."""
    return sum(len(text) for text in _texts(blocks))


def _texts(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [
            text
            for key, value in node.items()
            for text in ([value] if key == "text" and isinstance(value, str) else _texts(value))
        ]
    if isinstance(node, list):
        return [text for item in node for text in _texts(item)]
    return []


def fields(*pairs: tuple[str, str]) -> Block:
    """Up to ten labelled facts side by side; values are ours (`mrkdwn`): a person's words
    among them are passed through `escape` by the caller."""
    return {
        "type": "section",
        "fields": [
            {"type": "mrkdwn", "text": truncate(f"*{label}*\n{mrkdwn(value)}", 2000)}
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


def option(text: str, value: str) -> dict[str, Any]:
    """One choice of a select menu."""
    return {"text": plain(text, OPTION_TEXT_LIMIT), "value": value}


def actions(block_id: str, *buttons: dict[str, Any]) -> Block:
    return {"type": "actions", "block_id": block_id, "elements": list(buttons)}


def message(text: str, blocks: list[Block]) -> dict[str, Any]:
    """chat.postMessage / chat.update arguments: escaped fallback text within limits."""
    return {
        "text": truncate(mrkdwn(text), MESSAGE_TEXT_LIMIT),
        "blocks": blocks[:MESSAGE_BLOCK_LIMIT],
    }


def ephemeral(text: str) -> dict[str, Any]:
    """A reply only the person who asked can see, escaped like every other message."""
    return {"response_type": "ephemeral", "text": truncate(mrkdwn(text), MESSAGE_TEXT_LIMIT)}


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
