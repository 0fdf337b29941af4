"""The sweeper's share of the inbox (bot.inbox): clicks acknowledged by a replica that died
before doing them are done here, once each."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from bot.inbox import MAX_ATTEMPTS, claim_lapsed, finished
from bot.listeners.actions import redo

if TYPE_CHECKING:
    from bot.app import AppContext

log = logging.getLogger(__name__)


def take_over(ctx: AppContext, now: datetime) -> int:
    """Do the lapsed clicks; returns how many were done. A click is deleted whatever its work
    did (a failure is a bug, logged): only a replica's death leaves one behind."""
    done = 0
    for item in claim_lapsed(ctx.lab, now):
        try:
            if item.attempts > MAX_ATTEMPTS:
                log.error("click %s given up after %s attempts", item.id, item.attempts - 1)
            else:
                redo(ctx, item.body)
                done += 1
        except Exception:
            log.exception("click %s taken over and failed", item.id)
        finally:
            finished(ctx.lab, item.id)
    return done
