"""Direct messages to a lease's owner: each notice's sentence, plus the buttons that let the
owner act on it where they read it (Extend, Release, Cancel, the write-up form)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from bot.blocks.kit import (
    MESSAGE_BLOCK_LIMIT,
    MESSAGE_CHARS_BUDGET,
    Block,
    actions,
    block_chars,
    button,
    context,
    escape,
    mrkdwn,
    number,
    packed,
    section,
)
from commands.durations import DurationError, format_duration, parse_duration
from commands.keys import keys_words
from commands.notices import Kind, Message
from commands.serverfiles import first_address
from commands.serverpages import PAGE_SIZE

EXTEND = "lease_extend"
RELEASE = "lease_release"
CANCEL = "lease_cancel"
WRITEUP = "writeup_open"
SHARE = "lease_share"
EXTENSIONS = (timedelta(hours=24), timedelta(hours=72))


def extend_button(lease_id: int, extra: timedelta) -> dict:
    return button(
        f"Extend +{format_duration(extra)}", EXTEND, f"{lease_id}-{format_duration(extra)}"
    )


def extend_target(value: str | None) -> tuple[int, timedelta] | None:
    """`12-24h` -> (12, 24h); None for anything a Extend button could not have sent."""
    lease, _, extra = (value or "").partition("-")
    lease_id = number(lease)
    try:
        duration = parse_duration(extra)
    except DurationError:
        return None
    return (lease_id, duration) if lease_id else None


def lease_buttons(lease_id: int, state: str) -> list[dict]:
    """The buttons an owner gets for a lease in this state (in DMs and on App Home)."""
    share = button("Add co-owners", SHARE, str(lease_id))
    if state == "active":
        return [
            *(extend_button(lease_id, extra) for extra in EXTENSIONS),
            share,
            button("Release now", RELEASE, str(lease_id), "danger"),
        ]
    if state == "pending":
        return [share, button("Cancel request", CANCEL, str(lease_id))]
    if state == "booked":  # approved ahead, not started: it may still be cancelled
        return [share, button("Cancel booking", CANCEL, str(lease_id))]
    return []


def dm_blocks(message: Message) -> list[Block]:
    return _BY_KIND.get(message.kind, _sentence)(message)


def _sentence(message: Message) -> list[Block]:
    return [section(mrkdwn(message.text))]


def _with_buttons(message: Message, state: str) -> list[Block]:
    """The sentence, then the buttons the owner has for a lease in `state`."""
    buttons = lease_buttons(message.lease_id, state) if message.lease_id else []
    return [
        *_sentence(message),
        *([actions(f"lease:{message.lease_id}", *buttons)] if buttons else []),
    ]


def _with_lease_buttons(message: Message) -> list[Block]:
    return _with_buttons(message, "active")


def _ready(message: Message) -> list[Block]:
    """What a person needs to use the servers, whatever the lease's size: how to log in, the
    keys on the servers and when the lease ends always; then one `ssh` line per server for as
    many servers as the message has room for, and where the rest are."""
    data = message.data
    login = str(data.get("login") or "root")
    servers = data.get("servers") or []
    labels = keys_words(data.get("keys") or []).split("\n")
    keys, _ = packed([mrkdwn(line) for line in labels], KEYS_BUDGET, KEY_SECTIONS)
    fixed = [
        section(mrkdwn(str(data.get("intro") or message.text))),
        *keys,
        *([section(mrkdwn(str(data["ends"])))] if data.get("ends") else []),
        *_with_lease_buttons(message)[1:],
    ]
    more = context(_more(message.lease_id, len(servers), len(servers)))  # the longest it gets
    room = MESSAGE_CHARS_BUDGET - block_chars([*fixed, more])
    several = len({s.get("metro") for s in servers}) > 1
    listing, shown = packed(
        [_login_line(login, s, several) for s in servers],
        room,
        MESSAGE_BLOCK_LIMIT - len(fixed) - 1,
    )
    rest = [context(_more(message.lease_id, shown, len(servers)))] if shown < len(servers) else []
    return [fixed[0], *listing, *rest, *fixed[1:]]


# The keys come before the servers: all the room but what the sentences and buttons take.
KEYS_BUDGET = MESSAGE_CHARS_BUDGET - 2_000
KEY_SECTIONS = 4


def _login_line(login: str, server: dict, several: bool) -> str:
    """One server; across several metros (listed metro by metro), with its metro."""
    name = escape(server["hostname"]) + (f", {escape(str(server['metro']))}" if several else "")
    address = first_address(str(server.get("ips") or ""))
    if not address:
        return f"{name}: no address yet"
    return f"`ssh {escape(login)}@{escape(address)}`  ({name})"


def _more(lease_id: int | None, shown: int, total: int) -> str:
    return (
        f"{shown} of {total} servers listed here. All {total} are in the files sent with this "
        f"message (CSV, SSH config, Ansible inventory); `/lab show {lease_id}` pages through "
        f"them, {PAGE_SIZE} a page (`/lab show {lease_id} servers 2` is the second)."
    )


def silent_lease(message: Message) -> list[Block]:
    """For the reviewers' channel: a lease nobody answered, with the Extend buttons a reviewer
    may use on the team's behalf."""
    extend = [extend_button(message.lease_id, extra) for extra in EXTENSIONS]
    return [*_sentence(message), actions(f"silent:{message.lease_id}", *extend)]


def _writeup(message: Message) -> list[Block]:
    return [
        *_sentence(message),
        actions(
            f"writeup:{message.lease_id}",
            button("Send the write-up link", WRITEUP, str(message.lease_id), "primary"),
        ),
    ]


def _request_received(message: Message) -> list[Block]:
    return _with_buttons(message, "pending")


def _decision(message: Message) -> list[Block]:
    """A booking's approval carries Cancel, for while it has not started."""
    booked = message.data.get("booking") and message.data.get("decision") == "approved"
    return _with_buttons(message, "booked") if booked else _sentence(message)


def _day_before(message: Message) -> list[Block]:
    return _with_buttons(message, "booked")


_BY_KIND: dict[Kind, Callable[[Message], list[Block]]] = {
    Kind.REQUEST_RECEIVED: _request_received,
    Kind.DECISION: _decision,
    Kind.DAY_BEFORE: _day_before,
    Kind.READY: _ready,
    Kind.REMINDER: _with_lease_buttons,
    Kind.EXTENDED: _with_lease_buttons,
    Kind.WRITEUP_REQUEST: _writeup,
}
