"""Modal submissions: the request form, a denial's reason, co-owners, a write-up link.

Answers that are wrong field by field go back into the modal (`response_action=errors`, keyed
by block_id) inside the ack; those checks are pure, so the ack stays fast. The submission is
kept in the inbox before the ack; a worker (`work`) audits the refusal or runs the use case,
and only a refusal needs a message (success shows as the card or a DM).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
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
from commands.policy import check_request
from commands.request import request
from commands.review import deny
from commands.starts import StartError, check_start
from commands.writeups import submit_writeup

if TYPE_CHECKING:
    from bot.app import AppContext

Body = dict[str, Any]

NO_REASON = "Say why, so the requester knows what to change."
NO_ONE = "Choose at least one person."
ERROR_LIMIT = 150  # Slack shows a few lines under the field; keep the sentence whole enough


def register(app: App, ctx: AppContext) -> None:
    @app.view(re.compile(".*"))
    def submitted(ack: Ack, body: Body, view: dict[str, Any]) -> None:
        """In the web process: the pure checks, the request kept, and the ack (with the
        errors under their fields when there are any)."""
        ctx.hand_over(body)
        form = FORMS.get(str(view.get("callback_id")))
        errors = form.errors(ctx, _values(view)) if form else {}
        if errors:
            ack(response_action="errors", errors=_shortened(errors))
        else:
            ack()


def work(ctx: AppContext, body: Body) -> None:
    """In a worker: the form's refusal audited, or its use case run."""
    view = body.get("view") or {}
    user = user_of(body)
    form = FORMS.get(str(view.get("callback_id")))
    if form is None:
        sentence = (
            f"labbot does not know the form `{escape(str(view.get('callback_id', ''))[:40])}`; "
            "it may be from an older version. `/lab help` lists what you can do."
        )
        tell(ctx, body, sentence)
        audit_refusal(ctx, user, "form", sentence)
        return
    values = _values(view)
    errors = form.errors(ctx, values)
    if errors:
        audit_refusal(ctx, user, form.action, form.sentence(errors))
        return
    if not user:
        tell(ctx, body, UNKNOWN_USER)
        return
    form.submit(ctx, body, user, values, str(view.get("private_metadata") or ""))


@dataclass(frozen=True)
class Form:
    """A modal: what its answers must be (pure checks, run before the ack and again by the
    worker), and what submitting it does."""

    action: str
    errors: Callable[[AppContext, modals.Values], dict[str, str]]
    submit: Callable[[AppContext, Body, str, modals.Values, str], None]
    refused: str = ""  # the sentence a refusal is audited with, before the errors

    def sentence(self, errors: dict[str, str]) -> str:
        if self.refused:
            return self.refused + "; ".join(errors.values()) + "."
        return next(iter(errors.values()))


def _request_errors(ctx: AppContext, values: modals.Values) -> dict[str, str]:
    answer, errors = modals.parse_request(values)
    if answer.start_at is not None:
        try:
            check_start(answer.start_at, ctx.clock(), ctx.lab.policy.book_ahead, "UTC")
        except StartError as error:
            errors[modals.START] = str(error)
    return {**check_request(answer, ctx.lab.plans(), ctx.lab.policy), **errors}


def _needs(
    field: str, read: Callable[[modals.Values, str], object], sentence: str
) -> Callable[[AppContext, modals.Values], dict[str, str]]:
    """A form whose one check is that `field` was answered."""
    return lambda ctx, values: {} if read(values, field) else {field: sentence}


def _file(ctx: AppContext, body: Body, user: str, values: modals.Values, _: str) -> None:
    answer, _errors = modals.parse_request(values)
    outcome = request(ctx.lab, user, answer, ctx.clock())
    tell_refusal(ctx, body, outcome)
    refresh_home(ctx, user)
    check_after_filing(ctx, outcome)


def _deny(ctx: AppContext, body: Body, user: str, values: modals.Values, meta: str) -> None:
    target = modals.deny_target(meta)
    if target is None:
        tell(ctx, body, "That form lost track of what it was denying; click Deny again.")
        return
    tell_refusal(ctx, body, deny_with_reason(ctx, user, *target, modals.answer(values, "reason")))
    refresh_home(ctx, user)


def deny_with_reason(ctx: AppContext, user: str, kind: str, target: int, reason: str) -> Outcome:
    """A lease request or an extension, denied; the use case refuses non-reviewers."""
    if kind == "lease":
        return deny(ctx.lab, user, target, reason, ctx.clock())
    return decide_extension(ctx.lab, user, target, False, ctx.clock(), reason=reason)


def _writeup(ctx: AppContext, body: Body, user: str, values: modals.Values, meta: str) -> None:
    lease_id = number(meta)
    if lease_id is None:
        tell(ctx, body, "That form lost track of its lease; click the write-up button again.")
        return
    url = modals.answer(values, "url")
    tell(ctx, body, submit_writeup(ctx.lab, user, lease_id, url, ctx.clock()).message)


def _share(ctx: AppContext, body: Body, user: str, values: modals.Values, meta: str) -> None:
    lease_id = number(meta)
    if lease_id is None:
        tell(ctx, body, "That form lost track of its lease; click Add co-owners again.")
        return
    users = modals.chosen_users(values, "co_owners")
    tell(ctx, body, share(ctx.lab, user, lease_id, list(users), ctx.clock()).message)
    refresh_home(ctx, user)


FORMS = {
    modals.REQUEST: Form("request", _request_errors, _file, "That request cannot be filed: "),
    modals.DENY: Form("deny", _needs("reason", modals.answer, NO_REASON), _deny),
    modals.SHARE: Form("share", _needs("co_owners", modals.chosen_users, NO_ONE), _share),
    modals.WRITEUP: Form("writeup", lambda ctx, values: {}, _writeup),
}


def _values(view: dict[str, Any]) -> modals.Values:
    state = view.get("state") or {}
    return state.get("values") or {}


def _shortened(errors: dict[str, str]) -> dict[str, str]:
    return {field: truncate(message, ERROR_LIMIT) for field, message in errors.items()}
