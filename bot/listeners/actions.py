"""Button clicks: Approve/Deny on reviewer cards (and on a reviewer's App Home), Extend, Release
and Cancel in DMs and on App Home, Still using it and Release now on an idle lease's question,
the write-up form, and a catch-all for buttons we no longer know. Every click is kept in the
inbox and acknowledged first; a Deny, a write-up or co-owners opens its modal in the web process
right after the ack, while the trigger_id is still good; the rest is done by a worker (`work`)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from slack_bolt import Ack, App
from slack_sdk.errors import SlackApiError

from bot.blocks import cards, dms, home, pages
from bot.blocks.kit import escape, matching
from bot.blocks.modals import deny_modal, share_modal, writeup_modal
from bot.listeners.reply import (
    UNKNOWN_USER,
    button_of,
    home_places,
    refresh_home,
    tell,
    user_of,
)
from bot.listeners.views import deny_with_reason
from commands.extend import decide_extension, extend
from commands.idle import keep, release_idle
from commands.lab import Outcome
from commands.reclaim import release
from commands.request import cancel
from commands.review import approve, choose_donor
from commands.serverpages import show_page

if TYPE_CHECKING:
    from bot.app import AppContext

log = logging.getLogger(__name__)

Body = dict[str, Any]
Click = Callable[["AppContext", Body, str, str], None]

BROKEN_BUTTON = (
    "That button carries '{value}', which is not a lease or extension number; it may come "
    "from an old message. `/lab list` shows your leases."
)


def register(app: App, ctx: AppContext) -> None:
    @app.action(re.compile(".*"))
    def clicked(ack: Ack, body: Body) -> None:
        """In the web process: the click kept, the ack, and the form it asks for opened while
        the trigger_id is good."""
        ctx.hand_over(body)
        ack()
        action_id = str(button_of(body).get("action_id", ""))
        opener = next((o for a, o in OPENERS.items() if matching(a).match(action_id)), None)
        if opener is not None and user_of(body):
            ctx.after_ack(body, opener, ctx, body, user_of(body), value_of(button_of(body)))


def work(ctx: AppContext, body: Body) -> None:
    """In a worker: the click's use case, its answer, and the clicker's App Home."""
    action_id = str(button_of(body).get("action_id", ""))
    on_click = next((c for a, c in CLICKS.items() if matching(a).match(action_id)), unknown_button)
    user = user_of(body)
    if not user:
        tell(ctx, body, UNKNOWN_USER)
        return
    on_click(ctx, body, user, value_of(button_of(body)))
    refresh_home(ctx, user, home_places(body))


def kept_click(body: Body) -> str:
    """A click as its person knows it: "Your Approve on request #7"."""
    action = button_of(body)
    action_id, value = str(action.get("action_id", "")), value_of(action)
    target = cards.target_of(value)
    for named, name in NAMES.items():
        if matching(named).match(action_id) and target is not None:
            return "Your " + name.format(target)
    return f"Your click on `{escape(value)}`"


def value_of(action: dict[str, Any]) -> str:
    """What a click carries: a button's value, or the option chosen in a select menu."""
    chosen = (action.get("selected_option") or {}).get("value")
    return str(action.get("value") or chosen or "")


APPROVERS: dict[str, Callable[[AppContext, str, int], Outcome]] = {
    "lease": lambda ctx, user, lease_id: approve(ctx.lab, user, lease_id, ctx.clock()),
    "extension": lambda ctx, user, ext_id: decide_extension(
        ctx.lab, user, ext_id, True, ctx.clock()
    ),
}


def decision(kind: str, approving: bool) -> Click:
    """Approve or Deny on a reviewer card for a request (`lease`) or an `extension`: approving
    decides at once, denying first asks for the reason."""

    def click(ctx: AppContext, body: Body, user: str, value: str) -> None:
        target = cards.target_of(value)
        if target is None:
            tell(ctx, body, BROKEN_BUTTON.format(value=escape(value)))
        elif approving:
            tell(ctx, body, APPROVERS[kind](ctx, user, target).message)
        elif not ctx.lab.roles.is_reviewer(user):  # a reviewer was asked why (`ask_reason`)
            tell(ctx, body, deny_with_reason(ctx, user, kind, target, "").message)

    return click


def ask_reason(kind: str) -> Click:
    """Deny on a card, in the web process: the reason form, for a reviewer; anyone else is
    refused (and audited) by the worker, which calls the use case with no reason."""

    def opener(ctx: AppContext, body: Body, user: str, value: str) -> None:
        target = cards.target_of(value)
        if target is not None and ctx.lab.roles.is_reviewer(user):
            title = f"Why deny {'request #' if kind == 'lease' else 'extension '}{target}?"
            _open(ctx, body, deny_modal(kind, target, title))

    return opener


def on_target(parse: Callable[[str], tuple | None], use_case: Callable[..., Outcome]) -> Click:
    """A button whose value names what `use_case` acts on (a lease; with a donor, a length or
    a question's round): the use case with what `parse` read from it, or the broken-button
    sentence when the value is not one (a forged or stale payload)."""

    def click(ctx: AppContext, body: Body, user: str, value: str) -> None:
        target = parse(value)
        if target is None:
            tell(ctx, body, BROKEN_BUTTON.format(value=escape(value)))
            return
        tell(ctx, body, use_case(ctx.lab, user, *target, ctx.clock()).message)

    return click


def lease_of(value: str) -> tuple[int] | None:
    """Release or Cancel: the lease number is the whole value."""
    lease_id = cards.target_of(value)
    return None if lease_id is None else (lease_id,)


def opens(modal: Callable[[int], dict[str, Any]]) -> Click:
    """A button that opens a form about its lease (the write-up, co-owners), in the web
    process; a value that names no lease is answered by the worker (`broken`)."""

    def opener(ctx: AppContext, body: Body, user: str, value: str) -> None:
        lease_id = cards.target_of(value)
        if lease_id is not None:
            _open(ctx, body, modal(lease_id))

    return opener


def broken(ctx: AppContext, body: Body, user: str, value: str) -> None:
    """The worker's share of a button that opens a form: a value naming no lease."""
    if cards.target_of(value) is None:
        tell(ctx, body, BROKEN_BUTTON.format(value=escape(value)))


def on_more(ctx: AppContext, body: Body, user: str, value: str) -> None:
    """More or Previous on App Home: App Home is published again at the place the button
    carries (every click on App Home publishes it). A value no such button sends gets a
    sentence, and App Home its first page."""
    if home.read_place(value) is None:
        tell(
            ctx,
            body,
            f"That button carries '{escape(value)}', which is not a place in a list; "
            "App Home shows its first page again.",
        )


def on_page(ctx: AppContext, body: Body, user: str, value: str) -> None:
    """*Next servers* or *Previous* under `/lab show`'s answer: the page, in its place."""
    target = pages.page_target(value)
    if target is None:
        tell(ctx, body, BROKEN_BUTTON.format(value=escape(value)))
        return
    lease_id, page, seen = target
    shown = show_page(ctx.lab, user, lease_id, page, ctx.clock(), seen=seen)
    tell(ctx, body, shown.outcome.message, pages.page_blocks(shown), replace=True)


def unknown_button(ctx: AppContext, body: Body, user: str, value: str) -> None:
    action_id = str(button_of(body).get("action_id", ""))
    tell(
        ctx,
        body,
        f"labbot does not know the button `{escape(action_id)}`; it may come from an old message. "
        "`/lab list` shows your leases, and `/lab help` everything you can do.",
    )


def _open(ctx: AppContext, body: Body, view: dict[str, Any]) -> None:
    try:
        ctx.client.views_open(trigger_id=str(body.get("trigger_id") or ""), view=view)
    except SlackApiError as error:
        log.warning("modal did not open: %s", error)
        tell(ctx, body, "The form did not open; Slack may have been slow. Click again.")


OPENERS: dict[str, Click] = {
    cards.DENY: ask_reason("lease"),
    cards.EXTENSION_DENY: ask_reason("extension"),
    dms.WRITEUP: opens(writeup_modal),
    dms.SHARE: opens(share_modal),
}
# The clicks as their person names them, should the worker that does one fail.
NAMES = {
    cards.APPROVE: "Approve on request #{}",
    cards.EXTENSION_APPROVE: "Approve on extension {}",
    dms.RELEASE: "Release of lease #{}",
    dms.CANCEL: "Cancel of request #{}",
}

CLICKS: dict[str, Click] = {
    cards.APPROVE: decision("lease", approving=True),
    cards.DENY: decision("lease", approving=False),
    cards.EXTENSION_APPROVE: decision("extension", approving=True),
    cards.EXTENSION_DENY: decision("extension", approving=False),
    cards.DONOR: on_target(cards.donor_pick, choose_donor),
    dms.EXTEND: on_target(dms.extend_target, extend),
    dms.RELEASE: on_target(lease_of, release),
    dms.CANCEL: on_target(lease_of, cancel),
    dms.IDLE_KEEP: on_target(dms.idle_target, keep),
    dms.IDLE_RELEASE: on_target(dms.idle_target, release_idle),
    dms.WRITEUP: broken,
    dms.SHARE: broken,
    home.MORE: on_more,
    pages.PAGE: on_page,
}
