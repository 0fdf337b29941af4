"""The work of what Slack sent, done after the ack by whoever claimed it from the inbox.

Each surface's listener module has two halves: what the web process does before the ack (read
the request, answer what needs no database, open a form, keep the request: bot.inbox), and
`work(ctx, body)`, which a worker runs from the kept body alone. `run` does one kept request's
work once (bot.inbox.Once), then tells its person how it ended if it failed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bot.blocks.kit import escape
from bot.inbox import MAX_ATTEMPTS, AlreadyDone, Kept, Once, claim_due, finished, not_done
from bot.listeners import actions, commands, events, views
from bot.listeners.reply import tell
from commands.lab import LostRace

if TYPE_CHECKING:
    from bot.app import AppContext

log = logging.getLogger(__name__)

Body = dict[str, Any]
Finish = Callable[["AppContext", int], None]  # marks a request done that wrote nothing

SORRY = (
    "Something went wrong inside labbot; it is logged for the admins. Whatever was already "
    "done stands: `/lab list` shows where your leases are."
)
SURFACES: dict[str, Callable[[AppContext, Body], None]] = {
    "block_actions": actions.work,
    "view_submission": views.work,
    "event_callback": events.work,
}


def do(ctx: AppContext, body: Body) -> None:
    """The work of one request, as its listener would have done it after the ack."""
    if body.get("command"):
        commands.work(ctx, body)
        return
    surface = SURFACES.get(str(body.get("type")))
    if surface is None:
        log.warning("kept a request of type %s, which no worker does", body.get("type"))
        return
    surface(ctx, body)


def run(ctx: AppContext, item: Kept, finish: Finish | None = None) -> None:
    """One kept request's work, done once: its first write marks it done in the same
    transaction, and a run that finds it done writes nothing. A failure is told to its person,
    who saw the request acknowledged and would otherwise wait. If the database fails under the
    run itself, the claim lapses and another worker tries again."""
    try:
        _run(ctx, item, finish or _finished_now)
    except Exception:
        log.exception("kept request %s was not finished; its claim lapses for a retry", item.id)


def _run(ctx: AppContext, item: Kept, finish: Finish) -> None:
    now = ctx.clock()
    if item.attempts > MAX_ATTEMPTS:
        log.error("kept request %s given up after %s attempts", item.id, item.attempts - 1)
        sentence = (
            f"{sent(item.body)} was acknowledged but never done: labbot stopped "
            f"{item.attempts - 1} times while doing it and gave up (it is logged for the "
            "admins), so ask an admin before trying again."
        )
        not_done(ctx.lab, item, sentence, now)
        ctx.lab.flush_notices(now, None)
        return
    once = Once(ctx.lab.db, item.id, now)
    try:
        do(ctx.on(replace(ctx.lab, db=once)), item.body)
    except AlreadyDone:
        log.info("kept request %s was done by another run; not done again", item.id)
        return
    except Exception as error:
        if item.attempts == 1:
            tell(ctx, item.body, failure_sentence(error))
        else:  # taken over from a worker that died: told in a DM, through the outbox
            not_done(ctx.lab, item, failure_sentence(error, sorry=_retry(item.body)), now)
            ctx.lab.flush_notices(now, None)
            return
    if not once.marked:  # nothing written (a read, a refusal told in the ack): done now
        finish(ctx, item.id)


def _finished_now(ctx: AppContext, item_id: int) -> None:
    finished(ctx.lab, item_id, ctx.clock())


def take_over(ctx: AppContext, now: datetime, limit: int = 50) -> int:
    """Claim the requests waiting for a worker (new, or left by one that died) and do them
    here, one after another; returns how many were claimed."""
    items = claim_due(ctx.lab, now, limit)
    for item in items:
        run(ctx, item)
    return len(items)


def answered(ctx: AppContext, body: Body, job: Callable[..., None], *args: Any) -> None:
    """Run `job`; if it raises, its person is told how it ended rather than left waiting."""
    try:
        job(*args)
    except Exception as error:
        tell(ctx, body, failure_sentence(error))


def sent(body: Body) -> str:
    """A kept request as its person knows it: "Your Approve on request #7"."""
    if body.get("command"):
        return f"Your `{escape(str(body['command']))} {escape(str(body.get('text') or ''))[:60]}`"
    if body.get("type") == "view_submission":
        return "Your form"
    return actions.kept_click(body)


def _retry(body: Body) -> str:
    return (
        f"{sent(body)} was acknowledged but could not be done (it is logged for the admins): "
        "try again, or ask an admin if it fails again."
    )


def failure_sentence(error: Exception, sorry: str = SORRY) -> str:
    """What a person is told when their action raised. A lost race is not a bug: another
    caller changed the lease first, the loser's transaction rolled back, and all it may do is
    say so. Anything else is a bug: logged for the admins, and the person told `sorry` (by
    default, that what was already committed stands)."""
    if isinstance(error, LostRace):
        log.info("lost a race: %s", error)
        return f"{error} Nothing else was done; `/lab show {error.lease_id}` says where it is now."
    log.error("listener failed: %s", error, exc_info=error)
    return sorry
