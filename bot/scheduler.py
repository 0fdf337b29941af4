"""The sweep, on a schedule, in the serving process.

One interval job with a stable id in an in-memory store: deadlines live in our own tables, so
nothing is lost on restart and nothing runs twice. APScheduler's defaults would drop a late run
with only a warning (misfire_grace_time=1 s) and could overlap runs; these settings make a late
run happen once, never concurrently. It also runs once at start-up, to catch up on whatever
fell due while the bot was down.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler

from bot.metrics import sweep_timer
from bot.runtime import Clock
from commands.health import record_sweep
from commands.lab import Lab
from commands.sweep import sweep

log = logging.getLogger(__name__)

JOB_ID = "labbot-sweep"

Also = Callable[[datetime], object]


def run_sweep(lab: Lab, clock: Clock, also: Also | None = None) -> None:
    """One pass, timed for /metrics and recorded in the database for /healthz; a failure is
    logged and the next pass tries again (the sweep is idempotent). `also` is the Slack side's
    share of the pass (clicks a dead replica acked: bot.takeover)."""
    now = clock()
    try:
        with sweep_timer():
            report = sweep(lab, now)
            if also is not None:
                also(now)
        record_sweep(lab.db, now)
    except Exception:
        log.exception("sweep failed; the next run retries")
        return
    for line in report.errors:
        log.warning("sweep: %s", line)


def start_sweeper(
    lab: Lab, clock: Clock, every: timedelta, also: Also | None = None
) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.add_job(
        run_sweep,
        "interval",
        args=(lab, clock, also),
        seconds=every.total_seconds(),
        id=JOB_ID,
        replace_existing=True,
        max_instances=1,
        coalesce=True,
        misfire_grace_time=None,
        next_run_time=datetime.now(UTC),  # once at start-up, then every interval
    )
    scheduler.start()
    return scheduler
