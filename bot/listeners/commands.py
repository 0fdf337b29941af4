"""The slash command (`/lab` unless LABBOT_COMMAND says otherwise).

What needs no database (help, a typo) is answered inside the ack itself, and the request form
opens right after it; everything else is kept in the inbox, acknowledged at once, and answered
through the response_url by the worker that does it (`work`), however long the database or the
provider takes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.blocks.kit import ephemeral, escape
from bot.blocks.modals import request_modal
from bot.blocks.pages import page_blocks
from bot.listeners.reply import (
    UNKNOWN_USER,
    audit_refusal,
    check_after_filing,
    in_their_zone,
    refresh_home,
    tell,
    user_of,
)
from commands.capacity import calendar_text
from commands.coowners import share, unshare
from commands.credit_report import credit_report
from commands.extend import extend
from commands.grammar import Command, GrammarError, help_text, parse
from commands.keys import add_key, import_keys, list_keys, public_keys, remove_key
from commands.lab import Outcome
from commands.pages import ANSWER_BUDGET
from commands.policy import default_os
from commands.provision import provision
from commands.queue import queue_text
from commands.reclaim import release
from commands.request import cancel, request
from commands.review import approve, deny
from commands.serverpages import Shown, show_page
from commands.views import lease_list, plans_text

if TYPE_CHECKING:
    from bot.app import AppContext

log = logging.getLogger(__name__)

Answer = Callable[["AppContext", str, Command], "Outcome | Shown | str"]


def register(app: App, ctx: AppContext) -> None:
    @app.command(ctx.settings.command)
    def lab_command(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        on_command(ctx, ack, body, client)


def on_command(ctx: AppContext, ack: Ack, body: dict[str, Any], client: WebClient) -> None:
    """In the web process: an answer that needs no database, the form, or the request kept."""
    try:
        command = parse(str(body.get("text") or ""))
    except GrammarError as error:
        ctx.hand_over(body)  # its refusal is audited by the worker
        ack(**ephemeral(f"{escape(str(error))} (`{ctx.settings.command} help` lists everything.)"))
        return
    if not user_of(body):
        ack(**ephemeral(UNKNOWN_USER))
        return
    if command.verb == "help":
        ack(**ephemeral(help_text(ctx.settings.command)))
        return
    if command.opens_form:
        ack()
        ctx.after_ack(body, open_request_form, ctx, client, body)
        return
    ctx.hand_over(body)
    ack()


def work(ctx: AppContext, body: dict[str, Any]) -> None:
    """In a worker: the command's use case, and its answer through the response_url."""
    user = user_of(body)
    try:
        command = parse(str(body.get("text") or ""))
    except GrammarError as error:
        audit_refusal(ctx, user, "command", str(error))
        return
    if user and command.verb != "help" and not command.opens_form:
        answer(ctx, body, user, command)


def answer(ctx: AppContext, body: dict[str, Any], user: str, command: Command) -> None:
    said = ANSWERS[command.verb](ctx, user, command)
    if isinstance(said, Shown):
        tell(ctx, body, said.outcome.message, page_blocks(said))
    else:
        tell(ctx, body, said.message if isinstance(said, Outcome) else said)
    if command.verb not in READ_ONLY:
        refresh_home(ctx, user)
    if command.verb == "request" and isinstance(said, Outcome):
        check_after_filing(ctx, said)


def open_request_form(ctx: AppContext, client: WebClient, body: dict[str, Any]) -> None:
    """Right after the ack, before anything slow: the trigger_id dies within seconds."""
    saved = public_keys(ctx.lab, user_of(body))
    catalog = ctx.lab.plans()
    view = request_modal(catalog, default_os(ctx.lab.policy, catalog), saved)
    try:
        client.views_open(trigger_id=str(body.get("trigger_id") or ""), view=view)
    except SlackApiError as error:
        log.warning("request form did not open: %s", error)
        tell(
            ctx,
            body,
            "The request form did not open (Slack said "
            f"{error.response.get('error', 'no')}); try again, or ask inline: "
            f"`{ctx.settings.command} request 3 c1.small.x86 ams1 48h project=NAME repo=URL "
            '"why"`.',
        )


READ_ONLY = {"list", "show", "credit", "plans", "calendar", "queue", "keys"}


def keys_answer(ctx: AppContext, user: str, command: Command) -> Outcome | str:
    now = ctx.clock()
    if command.action == "add":
        return add_key(ctx.lab, user, command.subject, now)
    if command.action == "remove":
        return remove_key(ctx.lab, user, command.subject, now)
    if command.action == "import":
        return import_keys(ctx.lab, user, command.forge, command.subject, now)
    return list_keys(ctx.lab, user)


ANSWERS: dict[str, Answer] = {
    "request": lambda ctx, user, c: request(
        ctx.lab, user, in_their_zone(ctx, user, c.request), ctx.clock()
    ),
    "list": lambda ctx, user, c: lease_list(
        ctx.lab, user, c.users[0] if c.users else user, c.page, ctx.clock()
    ),
    "show": lambda ctx, user, c: show_page(ctx.lab, user, c.lease_id, c.page, ctx.clock()),
    "extend": lambda ctx, user, c: extend(ctx.lab, user, c.lease_id, c.duration, ctx.clock()),
    "release": lambda ctx, user, c: release(ctx.lab, user, c.lease_id, ctx.clock()),
    "cancel": lambda ctx, user, c: cancel(ctx.lab, user, c.lease_id, ctx.clock()),
    "credit": lambda ctx, user, c: credit_report(ctx.lab, ctx.clock()).text(ANSWER_BUDGET),
    "plans": lambda ctx, user, c: plans_text(ctx.lab.plans()),
    "calendar": lambda ctx, user, c: calendar_text(ctx.lab, c.plan, c.metro, ctx.clock()),
    "queue": lambda ctx, user, c: queue_text(ctx.lab, user, ctx.clock(), c.page),
    "approve": lambda ctx, user, c: approve(
        ctx.lab, user, c.lease_id, ctx.clock(), override=c.override
    ),
    "deny": lambda ctx, user, c: deny(ctx.lab, user, c.lease_id, c.reason, ctx.clock()),
    "provision": lambda ctx, user, c: provision(ctx.lab, user, c.lease_id, ctx.clock()),
    "keys": keys_answer,
    "share": lambda ctx, user, c: share(ctx.lab, user, c.lease_id, list(c.users), ctx.clock()),
    "unshare": lambda ctx, user, c: unshare(ctx.lab, user, c.lease_id, c.users[0], ctx.clock()),
}
