"""The sweep's own process: one per `labbot serve`, started and watched by gunicorn's arbiter
(bot.children).

Not in a web worker: there are several of those, and a sweep pass would compete with acks for
that worker's interpreter lock. Its pass also prunes the inbox of requests done a day ago.

    python -m bot.sweeper    (run by `labbot serve`; not a command of its own)
"""

from __future__ import annotations

import logging
from functools import partial

from bot.app import build_context
from bot.children import run_child, until_stopped
from bot.inbox import prune
from bot.logs import configure
from bot.scheduler import start_sweeper
from bot.settings import from_env

log = logging.getLogger(__name__)


def main() -> int:
    settings = from_env()
    configure(settings.log_format)
    ctx = build_context(settings)
    scheduler = start_sweeper(
        ctx.lab, ctx.clock, settings.sweep_interval, also=partial(prune, ctx.lab)
    )
    log.info("sweeper running every %s", settings.sweep_interval)
    until_stopped(child=True)
    scheduler.shutdown(wait=True)
    ctx.shutdown()
    ctx.lab.db.dispose()
    return 0


if __name__ == "__main__":
    run_child("sweeper", main)
