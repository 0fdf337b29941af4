"""How a listener answers the one person who acted, whatever surface they acted on.

A slash command or a message button carries a response_url; a button in a channel message also
names the channel; App Home buttons and modal submissions carry neither, so the answer goes to
the person's DM with the app. Answering never raises: a lost answer must not turn a state
change that already happened into an error.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from bot.blocks.home import MORE, Places, home_view, read_place, read_places
from bot.blocks.kit import Block, ephemeral, matching
from commands.capacity import calendars
from commands.credit_report import credit_report
from commands.lab import Code, Outcome, Refusal, refuse
from commands.policy import RequestInput
from commands.queue import queue
from commands.repocheck import check_repository
from commands.views import person_leases

if TYPE_CHECKING:
    from bot.app import AppContext

log = logging.getLogger(__name__)

Body = dict[str, Any]

UNKNOWN_USER = (
    "That request came without a Slack user, so labbot cannot tell who asked; try again from Slack."
)


def user_of(body: Body) -> str:
    """The acting user's id: commands put it at the top level, interactions under `user`."""
    user = body.get("user")
    if isinstance(user, dict):
        return str(user.get("id") or "")
    return str(body.get("user_id") or "")


def in_their_zone(ctx: AppContext, user: str, req: RequestInput) -> RequestInput:
    """A request whose start or end is typed is read in its requester's own Slack time zone
    (`users.info` gives `tz`); when Slack cannot say, in UTC, which the answer names."""
    if not (req.start or req.end):
        return req
    try:
        zone = str((ctx.client.users_info(user=user).get("user") or {}).get("tz") or "UTC")
    except (SlackApiError, OSError) as error:
        log.warning("users.info of %s failed, reading the start in UTC: %s", user, error)
        zone = "UTC"
    return req.model_copy(update={"zone": zone})


def button_of(body: Body) -> dict[str, Any]:
    """The button a click's body carries (empty when it carries none)."""
    return (body.get("actions") or [{}])[0]


def tell(
    ctx: AppContext,
    body: Body,
    text: str,
    blocks: list[Block] | None = None,
    *,
    replace: bool = False,
) -> None:
    """An ephemeral answer to the person who acted: `text`, or `blocks` with `text` as their
    fallback; with `replace`, in place of the answer whose button was clicked."""
    user = user_of(body)
    reply = ephemeral(text)
    shown = {"blocks": blocks} if blocks else {}
    try:
        if body.get("response_url"):
            WebhookClient(body["response_url"]).send(**reply, **shown, replace_original=replace)
        elif channel := _channel_of(body):
            ctx.client.chat_postEphemeral(channel=channel, user=user, text=reply["text"], **shown)
        elif user:
            ctx.client.chat_postMessage(channel=user, text=reply["text"], **shown)
    except (SlackApiError, OSError) as error:
        log.warning("could not answer %s: %s", user, error)


def audit_refusal(ctx: AppContext, user: str, action: str, sentence: str) -> None:
    """Input refused inside the ack (a command labbot could not read, a form answered wrongly)
    is audited like any refusal, by the worker: the row holds the sentence the person was
    shown, never their text, so a secret pasted in the wrong place is not kept."""
    why = Refusal(Code.BAD_INPUT, sentence)
    refuse(ctx.lab, ctx.clock(), user or "unknown", action, why)


def tell_refusal(ctx: AppContext, body: Body, outcome: Outcome) -> None:
    """Modal submissions and card clicks show success elsewhere (the card, a DM); only a
    refusal needs its own answer."""
    if not outcome.ok:
        tell(ctx, body, outcome.message)


def check_after_filing(ctx: AppContext, outcome: Outcome) -> None:
    """Ask the forge about a new request's repository, after its person has been answered: a
    slow forge delays nothing but this thread, and the sweep asks again if it does not answer."""
    if outcome.ok and outcome.lease_id is not None:
        check_repository(ctx.lab, outcome.lease_id, ctx.clock())


def refresh_home(ctx: AppContext, user: str, places: Places | None = None) -> None:
    """Publish the person's App Home, each section at its place (the first page unless
    `places` says otherwise)."""
    if not user:
        return
    now = ctx.clock()
    lab = ctx.lab
    mine = person_leases(lab, user)
    waiting = queue(lab, now) if lab.roles.is_reviewer(user) else None
    view = home_view(mine, credit_report(lab, now), waiting, now, places, calendars(lab, now))
    try:
        ctx.client.views_publish(user_id=user, view=view)
    except SlackApiError as error:
        log.warning("could not publish App Home for %s: %s", user, error)


def home_places(body: Body) -> Places:
    """Where a click on App Home leaves its reader: where the view was, moved by a More
    button's value. A click anywhere else, and anything unreadable, starts from the top."""
    view = body.get("view")
    if not isinstance(view, dict) or view.get("type") != "home":
        return {}
    places = read_places(str(view.get("private_metadata") or ""))
    action = button_of(body)
    if matching(MORE).match(str(action.get("action_id", ""))):
        moved = read_place(str(action.get("value") or ""))
        if moved is None:
            return {}
        places[moved[0]] = moved[1]
    return places


def _channel_of(body: Body) -> str | None:
    channel = body.get("channel")
    if isinstance(channel, dict) and channel.get("id"):
        return str(channel["id"])
    container = body.get("container")
    if isinstance(container, dict) and container.get("channel_id"):
        return str(container["channel_id"])
    return None
