"""Direct messages to a lease's owner: each notice's sentence, plus the buttons that let the
owner act on it where they read it (Extend, Release, Cancel, the write-up form)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from bot.blocks.kit import Block, actions, button, context, escape, mrkdwn, number, section
from commands.durations import DurationError, format_duration, parse_duration
from commands.notices import Kind, Message

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
    """The sentence, then what to type: one `ssh` line per server, as the OS's login user."""
    login = str(message.data.get("login") or "root")
    servers = message.data.get("servers") or []
    logins = [
        f"`ssh {escape(login)}@{escape(_first(s['ips']))}`  ({escape(s['hostname'])})"
        for s in servers
        if s.get("ips")
    ]
    blocks = _with_lease_buttons(message)
    return [*blocks[:1], *([context("\n".join(logins))] if logins else []), *blocks[1:]]


def _first(ips: str) -> str:
    return ips.replace(",", " ").split()[0]


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


_BY_KIND: dict[Kind, Callable[[Message], list[Block]]] = {
    Kind.REQUEST_RECEIVED: _request_received,
    Kind.READY: _ready,
    Kind.REMINDER: _with_lease_buttons,
    Kind.EXTENDED: _with_lease_buttons,
    Kind.WRITEUP_REQUEST: _writeup,
}
