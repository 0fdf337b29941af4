"""The sweeper's share of the inbox (bot.inbox): clicks acknowledged by a replica that died
before doing them are done here, once each."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from bot.app import failure_sentence
from bot.inbox import MAX_ATTEMPTS, Kept, claim_lapsed, finished, not_done
from bot.listeners.actions import kept_click, redo

if TYPE_CHECKING:
    from bot.app import AppContext

log = logging.getLogger(__name__)


def take_over(ctx: AppContext, now: datetime) -> int:
    """Do the lapsed clicks; returns how many were done. A click is deleted whatever its work
    did. One that could not be done (a bug, or a click that stopped every replica that tried
    it) is logged and told to its person, who saw it acknowledged and would otherwise wait."""
    done = failed = 0
    for item in claim_lapsed(ctx.lab, now):
        sentence = _do(ctx, item)
        if sentence is None:
            finished(ctx.lab, item.id)
            done += 1
        else:
            not_done(ctx.lab, item, sentence, now)
            failed += 1
    if failed:
        ctx.lab.flush_notices(now, None)
    return done


def _do(ctx: AppContext, item: Kept) -> str | None:
    """A kept click's work; None when it was done, else what its person is to be told."""
    clicked = kept_click(item.body)
    if item.attempts > MAX_ATTEMPTS:
        log.error("click %s given up after %s attempts", item.id, item.attempts - 1)
        return (
            f"{clicked} was acknowledged but never done: labbot stopped {item.attempts - 1} times "
            "while doing it and gave up (it is logged for the admins), so ask an admin before "
            "clicking again."
        )
    try:
        redo(ctx, item.body)
    except Exception as error:
        return failure_sentence(
            error,
            sorry=f"{clicked} was acknowledged but could not be done (it is logged for the "
            "admins): click again, or ask an admin if it fails again.",
        )
    return None
