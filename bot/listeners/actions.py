"""Button clicks: Approve/Deny on reviewer cards (and on a reviewer's App Home), Extend, Release
and Cancel in DMs and on App Home, the write-up form, and a catch-all for buttons we no longer
know. Every click is acknowledged first; a Deny or a write-up opens its modal right after the
ack, while the trigger_id is still good."""

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
from bot.inbox import keep, then_finish
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
    for action, on_click in CLICKS.items():
        _listen(app, ctx, matching(action), on_click, action)
    _listen(app, ctx, re.compile(".*"), unknown_button, None)


def _listen(
    app: App, ctx: AppContext, action_id: re.Pattern[str], on_click: Click, action: str | None
) -> None:
    """A click that opens a modal is handled right after the ack, while the trigger_id is
    good; every other click on the worker pool. A click whose work is safe to repeat is kept
    in the inbox before the ack (bot.inbox), so that it is done even if this replica dies
    right after acking it."""

    @app.action(action_id)
    def listener(ack: Ack, body: Body) -> None:
        if action in OPENS_MODAL:
            ack()
            _handle(ctx, body, on_click)
        elif action in KEPT:
            item = keep(ctx.lab, body, ctx.clock())
            ack()
            ctx.later(body, then_finish, ctx.lab, item, _handle, ctx, body, on_click)
        else:
            ack()
            ctx.later(body, _handle, ctx, body, on_click)


def redo(ctx: AppContext, body: Body) -> None:
    """A kept click's work, done by a replica other than the one that acked it."""
    action_id = str(button_of(body).get("action_id", ""))
    for action in KEPT:
        if matching(action).match(action_id):
            _handle(ctx, body, CLICKS[action])
            return
    log.warning("a kept click names no button labbot keeps: %s", action_id)


def kept_click(body: Body) -> str:
    """A kept click as its person knows it: "Your Approve on request #7"."""
    action = button_of(body)
    action_id, value = str(action.get("action_id", "")), str(action.get("value") or "")
    target = cards.target_of(value)
    for kept, name in KEPT.items():
        if matching(kept).match(action_id) and target is not None:
            return "Your " + name.format(target)
    return f"Your click on `{escape(value)}`"


def _handle(ctx: AppContext, body: Body, on_click: Click) -> None:
    user = user_of(body)
    if not user:
        tell(ctx, body, UNKNOWN_USER)
        return
    action = button_of(body)
    chosen = (action.get("selected_option") or {}).get("value")  # a select menu's choice
    on_click(ctx, body, user, str(action.get("value") or chosen or ""))
    ctx.later(body, refresh_home, ctx, user, home_places(body))


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
        else:
            ask_reason(ctx, body, user, kind, target)

    return click


def ask_reason(ctx: AppContext, body: Body, user: str, kind: str, target: int) -> None:
    """Open the reason modal for a reviewer; anyone else is refused (and audited) by the use
    case itself, called with no reason."""
    if not ctx.lab.roles.is_reviewer(user):
        tell(ctx, body, deny_with_reason(ctx, user, kind, target, "").message)
        return
    title = f"Why deny {'request #' if kind == 'lease' else 'extension '}{target}?"
    _open(ctx, body, deny_modal(kind, target, title))


def on_donor(ctx: AppContext, body: Body, user: str, value: str) -> None:
    """A reviewer picks another donor in a request card's menu."""
    pick = cards.donor_pick(value)
    if pick is None:
        tell(ctx, body, BROKEN_BUTTON.format(value=escape(value)))
        return
    lease_id, donor = pick
    tell(ctx, body, choose_donor(ctx.lab, user, lease_id, donor, ctx.clock()).message)


def on_extend(ctx: AppContext, body: Body, user: str, value: str) -> None:
    target = dms.extend_target(value)
    if target is None:
        tell(ctx, body, BROKEN_BUTTON.format(value=escape(value)))
        return
    lease_id, extra = target
    tell(ctx, body, extend(ctx.lab, user, lease_id, extra, ctx.clock()).message)


def on_lease(use_case: Callable[..., Outcome]) -> Click:
    """Release or Cancel: the lease number is the whole value."""

    def click(ctx: AppContext, body: Body, user: str, value: str) -> None:
        lease_id = cards.target_of(value)
        if lease_id is None:
            tell(ctx, body, BROKEN_BUTTON.format(value=escape(value)))
            return
        tell(ctx, body, use_case(ctx.lab, user, lease_id, ctx.clock()).message)

    return click


def on_writeup(ctx: AppContext, body: Body, user: str, value: str) -> None:
    lease_id = cards.target_of(value)
    if lease_id is None:
        tell(ctx, body, BROKEN_BUTTON.format(value=escape(value)))
        return
    _open(ctx, body, writeup_modal(lease_id))


def on_share(ctx: AppContext, body: Body, user: str, value: str) -> None:
    lease_id = cards.target_of(value)
    if lease_id is None:
        tell(ctx, body, BROKEN_BUTTON.format(value=value))
        return
    _open(ctx, body, share_modal(lease_id))


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


OPENS_MODAL = {cards.DENY, cards.EXTENSION_DENY, dms.WRITEUP, dms.SHARE}
# Clicks whose work is a conditional change a second run refuses (bot.inbox): kept before the
# ack. Each is named as its person would name it, should a replica that takes it over fail.
KEPT = {
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
    cards.DONOR: on_donor,
    dms.EXTEND: on_extend,
    dms.RELEASE: on_lease(release),
    dms.CANCEL: on_lease(cancel),
    dms.WRITEUP: on_writeup,
    dms.SHARE: on_share,
    home.MORE: on_more,
    pages.PAGE: on_page,
}
