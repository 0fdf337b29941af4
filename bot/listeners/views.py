"""Modal submissions: the request form, a denial's reason, a write-up link.

Answers that are wrong field by field go back into the modal (`response_action=errors`, keyed
by block_id) inside the ack; those checks are pure, so the ack stays fast. The use case runs
after the ack, and only a refusal needs a message (success shows as the card or a DM).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from slack_bolt import Ack, App

from bot.blocks import modals
from bot.blocks.kit import escape, number, truncate
from bot.listeners.reply import (
    UNKNOWN_USER,
    audit_refusal,
    check_after_filing,
    refresh_home,
    tell,
    tell_refusal,
    user_of,
)
from commands.coowners import share
from commands.extend import decide_extension
from commands.lab import Outcome
from commands.policy import RequestInput, check_request
from commands.request import request
from commands.review import deny
from commands.writeups import submit_writeup

if TYPE_CHECKING:
    from bot.app import AppContext

Body = dict[str, Any]

NO_REASON = "Say why, so the requester knows what to change."
NO_ONE = "Choose at least one person."
ERROR_LIMIT = 150  # Slack shows a few lines under the field; keep the sentence whole enough


def register(app: App, ctx: AppContext) -> None:
    @app.view(modals.REQUEST)
    def request_form(ack: Ack, body: Body, view: dict[str, Any]) -> None:
        on_request(ctx, ack, body, view)

    @app.view(modals.DENY)
    def deny_form(ack: Ack, body: Body, view: dict[str, Any]) -> None:
        on_deny(ctx, ack, body, view)

    @app.view(modals.SHARE)
    def share_form(ack: Ack, body: Body, view: dict[str, Any]) -> None:
        on_share(ctx, ack, body, view)

    @app.view(modals.WRITEUP)
    def writeup_form(ack: Ack, body: Body, view: dict[str, Any]) -> None:
        on_writeup(ctx, ack, body, view)

    @app.view(re.compile(".*"))
    def unknown_form(ack: Ack, body: Body, view: dict[str, Any]) -> None:
        ack()
        sentence = (
            f"labbot does not know the form `{escape(str(view.get('callback_id', ''))[:40])}`; "
            "it may be from an older version. `/lab help` lists what you can do."
        )
        tell(ctx, body, sentence)
        audit_refusal(ctx, body, user_of(body), "form", sentence)


def on_request(ctx: AppContext, ack: Ack, body: Body, view: dict[str, Any]) -> None:
    user = user_of(body)
    answer, errors = modals.parse_request(_values(view))
    errors = {**check_request(answer, ctx.lab.plans(), ctx.lab.policy), **errors}
    if errors:
        sentence = "That request cannot be filed: " + "; ".join(errors.values()) + "."
        _refuse_form(ctx, ack, body, "request", _shortened(errors), sentence)
        return
    ack()
    if not user:
        tell(ctx, body, UNKNOWN_USER)
        return
    ctx.later(body, _file, ctx, body, user, answer)


def _file(ctx: AppContext, body: Body, user: str, answer: RequestInput) -> None:
    outcome = request(ctx.lab, user, answer, ctx.clock())
    tell_refusal(ctx, body, outcome)
    refresh_home(ctx, user)
    check_after_filing(ctx, outcome)


def _refuse_form(
    ctx: AppContext, ack: Ack, body: Body, action: str, errors: dict[str, str], sentence: str
) -> None:
    """A form answered wrongly: Slack shows each error under its field and keeps the form open,
    so the ack is the answer; the refusal is audited like any other and nothing else happens."""
    ack(response_action="errors", errors=errors)
    audit_refusal(ctx, body, user_of(body), action, sentence)


def on_deny(ctx: AppContext, ack: Ack, body: Body, view: dict[str, Any]) -> None:
    reason = modals.answer(_values(view), "reason")
    if not reason:
        _refuse_form(ctx, ack, body, "deny", {"reason": NO_REASON}, NO_REASON)
        return
    ack()
    user = user_of(body)
    target = modals.deny_target(str(view.get("private_metadata") or ""))
    if target is None:
        tell(ctx, body, "That form lost track of what it was denying; click Deny again.")
        return
    ctx.later(body, _deny, ctx, body, user, target, reason)


def _deny(ctx: AppContext, body: Body, user: str, target: tuple[str, int], reason: str) -> None:
    tell_refusal(ctx, body, deny_with_reason(ctx, user, *target, reason))
    refresh_home(ctx, user)


def deny_with_reason(ctx: AppContext, user: str, kind: str, target: int, reason: str) -> Outcome:
    """A lease request or an extension, denied; the use case refuses non-reviewers."""
    if kind == "lease":
        return deny(ctx.lab, user, target, reason, ctx.clock())
    return decide_extension(ctx.lab, user, target, False, ctx.clock(), reason=reason)


def on_writeup(ctx: AppContext, ack: Ack, body: Body, view: dict[str, Any]) -> None:
    ack()
    user = user_of(body)
    lease_id = number(str(view.get("private_metadata") or ""))
    if lease_id is None:
        tell(ctx, body, "That form lost track of its lease; click the write-up button again.")
        return
    url = modals.answer(_values(view), "url")
    ctx.later(body, _writeup, ctx, body, user, lease_id, url)


def _writeup(ctx: AppContext, body: Body, user: str, lease_id: int, url: str) -> None:
    tell(ctx, body, submit_writeup(ctx.lab, user, lease_id, url, ctx.clock()).message)


def on_share(ctx: AppContext, ack: Ack, body: Body, view: dict[str, Any]) -> None:
    users = modals.chosen_users(_values(view), "co_owners")
    if not users:
        _refuse_form(ctx, ack, body, "share", {"co_owners": NO_ONE}, NO_ONE)
        return
    ack()
    user = user_of(body)
    lease_id = number(str(view.get("private_metadata") or ""))
    if lease_id is None:
        tell(ctx, body, "That form lost track of its lease; click Add co-owners again.")
        return
    ctx.later(body, _share, ctx, body, user, lease_id, users)


def _share(ctx: AppContext, body: Body, user: str, lease_id: int, users: tuple[str, ...]) -> None:
    tell(ctx, body, share(ctx.lab, user, lease_id, list(users), ctx.clock()).message)
    refresh_home(ctx, user)


def _values(view: dict[str, Any]) -> modals.Values:
    state = view.get("state") or {}
    return state.get("values") or {}


def _shortened(errors: dict[str, str]) -> dict[str, str]:
    return {field: truncate(message, ERROR_LIMIT) for field, message in errors.items()}
